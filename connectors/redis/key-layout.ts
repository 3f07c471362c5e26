import type { Row, TableId } from '../../src/model/change-event.ts';

/**
 * How rows map to Redis keys: `<key_prefix><key_template>`, the template's placeholders filled with
 * escaped values. Escaping: in every value put into a key, `\` becomes `\\` and `:` becomes `\:`;
 * composite key values are then joined by a bare `:`. So key values containing ':' never collide
 * with composite keys (`{a:'x:y'}` -> `x\:y`, `{a:'x', b:'y'}` -> `x:y`), and a table's keys can be
 * recognised exactly (see `tableMatcher`). Values become strings first: strings as they are,
 * numbers, bigints and booleans by String(), objects as JSON, null as the empty string.
 *
 * Internal keys (tombstones) live under `<key_prefix>__cdc:`; a row key that would start there is
 * refused, so no row can overwrite them.
 */
export const PLACEHOLDERS = ['table', 'schema', 'db', 'key'] as const;
type Placeholder = (typeof PLACEHOLDERS)[number];

export const DEFAULT_KEY_TEMPLATE = '{table}:{key}';
export const RESERVED_NAMESPACE = '__cdc:';

const PLACEHOLDER_RE = /\{([A-Za-z_]*)\}/g;

/** Problems with a key template, for the config schema (empty when it is usable). */
export function templateProblems(template: string): string[] {
  const problems: string[] = [];
  let keys = 0;
  for (const m of template.matchAll(PLACEHOLDER_RE)) {
    const name = m[1] ?? '';
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
      problems.push(`unknown placeholder {${name}}; known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`);
    }
    if (name === 'key') keys++;
  }
  // Exactly one {key}: that is what makes a table's keys recognisable for truncate.
  if (keys !== 1) problems.push('must contain {key} exactly once');
  return problems;
}

export function escapeKeyPart(value: string): string {
  return value.replace(/[\\:]/g, (c) => `\\${c}`);
}

function keyValueString(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
}

/** Escapes SCAN MATCH glob syntax so a literal matches only itself. */
export function escapeGlob(literal: string): string {
  return literal.replace(/[\\*?[\]^]/g, (c) => `\\${c}`);
}

function escapeRegExp(literal: string): string {
  return literal.replace(/[\\^$.*+?()[\]{}|]/g, (c) => `\\${c}`);
}

interface TableParts {
  /** Everything before {key}, prefix included. */
  readonly head: string;
  /** Everything after {key}. */
  readonly tail: string;
}

export interface KeyLayout {
  readonly prefix: string;
  /** The row key, or an error message when the row cannot have one. */
  rowKey(table: TableId, key: Readonly<Row> | null): string | { readonly error: string };
  /** Where a delete's tombstone for a row key lives. */
  tombstoneKey(rowKey: string): string;
  /** Where the table's truncate watermark lives: one per set of keys a truncate removes. */
  truncateKey(table: TableId): string;
  /** A SCAN MATCH pattern covering the table's row keys (and possibly others: check with `matcher`). */
  tablePattern(table: TableId): string;
  /** Exactly the table's row keys. */
  tableMatcher(table: TableId): RegExp;
}

export function createKeyLayout(prefix: string, template: string): KeyLayout {
  const problems = templateProblems(template);
  if (problems.length > 0) throw new RangeError(`key_template ${JSON.stringify(template)}: ${problems.join('; ')}`);
  const reserved = prefix + RESERVED_NAMESPACE;
  const [before = '', after = ''] = template.split('{key}');
  const fill = (text: string, table: TableId) =>
    text.replace(PLACEHOLDER_RE, (_m, name: string) => escapeKeyPart(tableValue(table, name as Exclude<Placeholder, 'key'>)));
  // Per-table parts are computed once: building a key is then two concatenations.
  const cache = new Map<string, TableParts>();
  const parts = (table: TableId): TableParts => {
    let p = cache.get(table.id);
    if (!p) {
      p = { head: prefix + fill(before, table), tail: fill(after, table) };
      cache.set(table.id, p);
    }
    return p;
  };

  const truncateKeys = new Map<string, string>();
  return {
    prefix,
    rowKey(table, key) {
      if (!key) return { error: 'the change has no key (a table without primary key?)' };
      const values = Object.values(key);
      if (values.length === 0) return { error: 'the change has an empty key' };
      const p = parts(table);
      const k = p.head + values.map((v) => escapeKeyPart(keyValueString(v))).join(':') + p.tail;
      if (k.startsWith(reserved)) return { error: `key ${k} is in the reserved namespace ${reserved}` };
      return k;
    },
    tombstoneKey(rowKey) {
      return `${reserved}tomb:${rowKey.slice(prefix.length)}`;
    },
    truncateKey(table) {
      let k = truncateKeys.get(table.id);
      if (k === undefined) {
        // The pattern without the prefix: glob escaping keeps head and tail apart.
        const p = parts(table);
        k = `${reserved}trunc:${escapeGlob(p.head.slice(prefix.length))}*${escapeGlob(p.tail)}`;
        truncateKeys.set(table.id, k);
      }
      return k;
    },
    tablePattern(table) {
      const p = parts(table);
      return `${escapeGlob(p.head)}*${escapeGlob(p.tail)}`;
    },
    tableMatcher(table) {
      const p = parts(table);
      // An escaped key: any characters, where every backslash escapes the next one.
      return new RegExp(`^${escapeRegExp(p.head)}(?:[^\\\\]|\\\\[\\\\:])*${escapeRegExp(p.tail)}$`, 's');
    },
  };
}

function tableValue(table: TableId, name: Exclude<Placeholder, 'key'>): string {
  switch (name) {
    case 'table':
      return table.table;
    case 'schema':
      return table.schema ?? '';
    case 'db':
      return table.db ?? '';
  }
}
