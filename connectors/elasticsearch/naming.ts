import { createHash } from 'node:crypto';
import type { Row, TableId } from '../../src/model/change-event.ts';

/**
 * Characters Elasticsearch refuses in index names (`\ / * ? " < > | , #`, space, `:`), plus `%`,
 * our escape character, so that escaping stays reversible.
 */
const ESCAPED_IN_INDEX = /[\\/*?"<>|, #:%]/g;
/** An index name may not start with these (`.` would also make it a hidden/system-looking index). */
const BAD_INDEX_START = /^[-_+.]/;
const MAX_INDEX_BYTES = 255;
/** Elasticsearch refuses longer `_id`s for the whole bulk request, so we refuse them per record. */
export const MAX_ID_BYTES = 512;

export const INDEX_PLACEHOLDERS = ['schema', 'table', 'db'] as const;
const PLACEHOLDER = /\{(schema|table|db)\}/g;

function percent(ch: string): string {
  return [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
}

/** A hostile table or schema name as a legal piece of an index name: lowercased, then percent-escaped. */
export function escapeIndexPart(value: string): string {
  return value.toLowerCase().replace(ESCAPED_IN_INDEX, percent);
}

/** Problems of the template's literal text (placeholders aside), for config validation. */
export function templateProblems(template: string): string[] {
  const problems: string[] = [];
  if (!template.includes('{table}')) problems.push('must contain {table}: one index per table (truncate scans the whole index)');
  const literal = template.replace(PLACEHOLDER, '');
  const unknown = /\{[^}]*\}/.exec(literal);
  if (unknown) problems.push(`unknown placeholder ${unknown[0]} (known: {schema}, {table}, {db})`);
  if (literal !== literal.toLowerCase()) problems.push('literal text must be lowercase');
  if (/[\\/*?"<>|, #:%]/.test(literal.replace(/[{}]/g, ''))) problems.push('literal text contains a character Elasticsearch refuses in index names');
  return problems;
}

/**
 * The index of a table: the template with `{schema}` (the schema, or the database when the source has
 * none, as in MySQL), `{table}` and `{db}` replaced by escaped, lowercased names. Deterministic; the
 * only lossy step is lowercasing (tables differing only by case share an index). A leading `-_+.`
 * is escaped too, and a name over 255 bytes is cut and suffixed with a hash of the full name.
 */
export function indexNameFor(template: string, table: TableId): string {
  let name = template.replace(PLACEHOLDER, (_m, p: string) => {
    const value = p === 'table' ? table.table : p === 'db' ? (table.db ?? '') : (table.schema ?? table.db ?? '');
    return escapeIndexPart(value);
  });
  if (BAD_INDEX_START.test(name)) name = percent(name[0]!) + name.slice(1);
  if (Buffer.byteLength(name) > MAX_INDEX_BYTES) {
    const hash = createHash('sha256').update(name).digest('hex').slice(0, 16);
    let cut = Buffer.from(name).subarray(0, MAX_INDEX_BYTES - hash.length - 1).toString('utf8');
    // A multi-byte character cut in half decodes as U+FFFD: drop it.
    cut = cut.replace(/\uFFFD+$/, '');
    name = `${cut}-${hash}`;
  }
  return name;
}

function keyPart(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
}

/**
 * The document `_id` of a row key. One key column: its value as a string. Several: the values joined
 * by `|`, each with `\` and `|` escaped by a backslash and null written `\N`, so that no two keys
 * give the same id (`a|b` + `c` is `a\|b|c`, not `a|b|c`). Returns an error message for keys that
 * cannot be an id.
 */
export function documentId(key: Readonly<Row> | null): { id: string } | { error: string } {
  if (!key) return { error: 'the event has no key' };
  const values = Object.values(key);
  let id: string;
  if (values.length === 0) return { error: 'the key has no columns' };
  if (values.length === 1) {
    const v = values[0];
    if (v === null || v === undefined) return { error: 'the key column is null' };
    id = keyPart(v);
  } else {
    id = values
      .map((v) => (v === null || v === undefined ? '\\N' : keyPart(v).replace(/[\\|]/g, (c) => `\\${c}`)))
      .join('|');
  }
  if (id.length === 0) return { error: 'the key is an empty string, which Elasticsearch refuses as _id' };
  if (Buffer.byteLength(id) > MAX_ID_BYTES) return { error: `the document id is longer than ${MAX_ID_BYTES} bytes` };
  return { id };
}

/** An index name and its JSON form, ready for bulk action lines. */
export interface IndexName {
  readonly name: string;
  readonly json: string;
}

/** The index of each table, computed once per table. */
export function createIndexNames(template: string): (table: TableId) => IndexName {
  const names = new Map<string, IndexName>();
  return (table) => {
    // Not table.id: schema "a.b" + table "c" and schema "a" + table "b.c" share that id.
    const cacheKey = `${table.db ?? ''}\u0000${table.schema ?? ''}\u0000${table.table}`;
    let entry = names.get(cacheKey);
    if (!entry) {
      const index = indexNameFor(template, table);
      entry = { name: index, json: JSON.stringify(index) };
      names.set(cacheKey, entry);
    }
    return entry;
  };
}
