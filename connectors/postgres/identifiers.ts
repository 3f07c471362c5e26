import { createHash } from 'node:crypto';
import type { TableId } from '../../src/model/change-event.ts';

/** PostgreSQL keeps the first NAMEDATALEN-1 bytes of an identifier. */
const MAX_IDENT_BYTES = 63;

/**
 * A quoted identifier. Names come from events (hostile input): doubling the quotes is the whole
 * escaping PostgreSQL needs; values never go into SQL text, only parameters do.
 */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Cuts a name to 63 bytes at a character boundary, as the server would: the catalog then holds the
 * name we look up, and metadata checks do not see a "missing" column on every batch.
 */
export function clipIdent(name: string, maxBytes = MAX_IDENT_BYTES): string {
  if (Buffer.byteLength(name) <= maxBytes) return name;
  let out = '';
  let bytes = 0;
  for (const ch of name) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/**
 * `<table><suffix>`; when that is too long, a clipped table name plus a hash of the full one keeps
 * side tables of long, similar names apart.
 */
export function sideTableName(table: string, suffix: string): string {
  const full = table + suffix;
  if (Buffer.byteLength(full) <= MAX_IDENT_BYTES) return full;
  const hash = createHash('sha256').update(table).digest('hex').slice(0, 8);
  const room = MAX_IDENT_BYTES - Buffer.byteLength(suffix) - hash.length - 1;
  return `${clipIdent(table, room)}_${hash}${suffix}`;
}

/** Fills {schema}, {table} and {db} (checked by the config schema). A MySQL table has no schema: its db stands in. */
export function renderTemplate(template: string, table: TableId): string {
  return template.replace(/\{(schema|table|db)\}/g, (_m, name: string) => {
    if (name === 'table') return table.table;
    if (name === 'db') return table.db ?? '';
    return table.schema ?? table.db ?? 'public';
  });
}
