import { quoteIdent } from './identifiers.ts';
import { DELETED_AT_COLUMN, type TableMeta } from './table-catalog.ts';

/**
 * SQL text of the batched statements. Each column travels as one array parameter (the last one
 * holds the positions) of the column's catalog type; names are quoted identifiers, so nothing from
 * an event reaches the SQL text unquoted.
 *
 * The stale-write guard is the position column: an upsert changes a row only when the stored
 * position is older (or NULL: rows the sink did not write), and skips keys whose tombstone, or
 * whose table's last truncate, is at least as new. Positions compare with COLLATE "C": byte order
 * is position order.
 */

/**
 * Parameter i as the FROM clause names it (u.c<i>), and its type: `<type>[]` when the column type has
 * an array type, so the server parses each element straight into the column type; otherwise (arrays,
 * unknown columns) text[] and a cast in the select list.
 */
interface Param {
  readonly decl: string;
  readonly expr: string;
}

/**
 * How a statement refers to its parameter i: `$<i+1>` (bound parameters), or the value itself as
 * a string literal (see inlineParams).
 */
export type ParamRef = (i: number) => string;

const bound: ParamRef = (i) => `$${i + 1}`;

/**
 * Parameter values as E'…' literals: a whole batch then goes as one simple-protocol query (one
 * round trip, one implicit transaction). E'' syntax: backslashes and quotes are escaped whatever
 * standard_conforming_strings says; the values are already array literals, which PostgreSQL
 * parses exactly as it would a bound parameter's text.
 */
export function inlineParams(values: readonly string[]): ParamRef {
  return (i) => literal(values[i]!);
}

/** A string as an E'' literal (see inlineParams). */
export function literal(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function param(meta: TableMeta, column: string, i: number, ref: ParamRef): Param {
  const col = meta.columns.get(column);
  if (!col) return { decl: `${ref(i)}::text[]`, expr: `u.c${i}` };
  if (col.typedParam) return { decl: `${ref(i)}::${col.type}[]`, expr: `u.c${i}` };
  return { decl: `${ref(i)}::text[]`, expr: col.type === 'text' ? `u.c${i}` : `u.c${i}::${col.type}` };
}

/** unnest of the parameters, positions last; and the select list naming them c0…, p. */
function source(params: readonly Param[], ref: ParamRef): { from: string; select: string } {
  const decls = [...params.map((p) => p.decl), `${ref(params.length)}::text[]`];
  const names = [...params.map((_p, i) => `c${i}`), 'p'];
  return {
    from: `unnest(${decls.join(', ')}) AS u(${names.join(', ')})`,
    select: [...params.map((p, i) => `${p.expr} AS c${i}`), 'u.p'].join(', '),
  };
}

/**
 * INSERT … ON CONFLICT DO UPDATE of the given columns (keys included) for rows that all set the
 * same columns. Columns a row does not set (unchanged TOAST values) are in neither list: the stored
 * value stays, and a new row gets NULL.
 */
export function upsertSql(
  meta: TableMeta,
  columns: readonly string[],
  keys: readonly string[],
  positionColumn: string,
  ref: ParamRef = bound,
): string {
  const pos = quoteIdent(positionColumn);
  const src = source(
    columns.map((c, i) => param(meta, c, i, ref)),
    ref,
  );
  const keyMatch = keys.map((k) => `d.${quoteIdent(k)} = s.c${columns.indexOf(k)}`);
  const updates = columns.filter((c) => !keys.includes(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
  updates.push(`${pos} = EXCLUDED.${pos}`);
  return (
    `INSERT INTO ${meta.ref.qualified} AS t (${[...columns.map(quoteIdent), pos].join(', ')}) ` +
    `SELECT ${[...columns.map((_c, i) => `s.c${i}`), 's.p'].join(', ')} ` +
    `FROM (SELECT ${src.select} FROM ${src.from}) AS s ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${meta.ref.tombstoneQualified} AS d WHERE ${keyMatch.join(' AND ')} ` +
    `AND d.${pos} >= s.p COLLATE "C") ` +
    (meta.truncates
      ? `AND NOT EXISTS (SELECT 1 FROM ${meta.ref.truncatesQualified} AS w WHERE w.target = ${literal(meta.ref.table)} ` +
        `AND w.${pos} >= s.p COLLATE "C") `
      : '') +
    `ON CONFLICT (${keys.map(quoteIdent).join(', ')}) DO UPDATE SET ${updates.join(', ')} ` +
    `WHERE t.${pos} IS NULL OR t.${pos} < EXCLUDED.${pos} COLLATE "C"`
  );
}

/**
 * Deletes the rows older than the delete and records (or advances) each key's tombstone, in one
 * statement. A tombstone is written even when the stored row is newer: it is then older than the
 * row and blocks nothing.
 */
export function deleteSql(meta: TableMeta, keys: readonly string[], positionColumn: string, ref: ParamRef = bound): string {
  const pos = quoteIdent(positionColumn);
  const deletedAt = quoteIdent(DELETED_AT_COLUMN);
  const src = source(
    keys.map((k, i) => param(meta, k, i, ref)),
    ref,
  );
  const keyMatch = keys.map((k, i) => `t.${quoteIdent(k)} = s.c${i}`);
  return (
    `WITH s AS (SELECT ${src.select} FROM ${src.from}), ` +
    `gone AS (DELETE FROM ${meta.ref.qualified} AS t USING s WHERE ${keyMatch.join(' AND ')} ` +
    `AND (t.${pos} IS NULL OR t.${pos} < s.p COLLATE "C")) ` +
    `INSERT INTO ${meta.ref.tombstoneQualified} AS d (${[...keys.map(quoteIdent), pos, deletedAt].join(', ')}) ` +
    `SELECT ${keys.map((_k, i) => `s.c${i}`).join(', ')}, s.p, now() FROM s ` +
    `ON CONFLICT (${keys.map(quoteIdent).join(', ')}) DO UPDATE SET ${pos} = EXCLUDED.${pos}, ${deletedAt} = EXCLUDED.${deletedAt} ` +
    `WHERE d.${pos} < EXCLUDED.${pos} COLLATE "C"`
  );
}

/** A truncate's statements: `lock` (absent for a target that does not exist) first, then `writes`. */
export interface TruncateSql {
  readonly lock: string | undefined;
  /** Each refers to the truncate's position. */
  readonly writes: readonly string[];
}

/**
 * A truncate at `position` (a literal or a parameter reference): removes the rows older than it, the
 * tombstones it supersedes, and raises the table's watermark. Not TRUNCATE: rows newer than the
 * truncate (it being replayed after them) must stay. The caller runs these in one transaction.
 */
export function truncateSql(meta: TableMeta, positionColumn: string, position: string): TruncateSql {
  const pos = quoteIdent(positionColumn);
  const writes: string[] = [];
  if (!meta.absent) writes.push(`DELETE FROM ${meta.ref.qualified} AS t WHERE t.${pos} IS NULL OR t.${pos} < ${position} COLLATE "C"`);
  if (meta.tombstoneColumns) writes.push(`DELETE FROM ${meta.ref.tombstoneQualified} AS d WHERE d.${pos} < ${position} COLLATE "C"`);
  writes.push(
    `INSERT INTO ${meta.ref.truncatesQualified} AS w (target, ${pos}) VALUES (${literal(meta.ref.table)}, ${position}) ` +
      `ON CONFLICT (target) DO UPDATE SET ${pos} = EXCLUDED.${pos}, truncated_at = now() WHERE w.${pos} < EXCLUDED.${pos} COLLATE "C"`,
  );
  return {
    // Writes of other partitions' batches may run at once: the lock waits for those in progress
    // (their rows are then seen and removed) and holds back new ones until the watermark is
    // committed (a statement takes its snapshot after its table locks, so they see it).
    // Self-conflicting, too.
    lock: meta.absent ? undefined : `LOCK TABLE ${meta.ref.qualified} IN SHARE ROW EXCLUSIVE MODE`,
    writes,
  };
}

/** Removes tombstones older than the retention ($1: milliseconds). */
export function cleanupSql(meta: TableMeta): string {
  return `DELETE FROM ${meta.ref.tombstoneQualified} WHERE ${quoteIdent(DELETED_AT_COLUMN)} < now() - $1::int8 * interval '1 millisecond'`;
}
