import { isUnavailable, type ChangeEvent, type ColumnSchema, type Row, type TableId } from '../../src/model/change-event.ts';
import { keptJson } from '../../src/model/raw-json.ts';
import { jsonWithBigints } from '../../src/model/serialize.ts';
import type { Precision, TableLayout } from './config.ts';
import { nanosPer, UnrepresentableError, type FieldValue } from './line-protocol.ts';

const DECIMALS = new Set(['org.apache.kafka.connect.data.Decimal', 'io.debezium.data.VariableScaleDecimal']);
const INTEGER_TYPES = new Set(['int8', 'int16', 'int32', 'int64']);
const PLACEHOLDER = /\{(schema|table|db)\}/g;

export function measurementFor(template: string, table: TableId): string {
  return template.replace(PLACEHOLDER, (_m, p: string) =>
    p === 'table' ? table.table : p === 'db' ? (table.db ?? '') : (table.schema ?? table.db ?? ''),
  );
}

/** A plain string or enum column: by type a tag. Decimals, temporal and JSON texts are fields. */
function isTagByType(value: unknown, column: ColumnSchema | undefined): boolean {
  if (column) return column.type === 'string' && (column.semantic === undefined || column.semantic === 'io.debezium.data.Enum');
  return typeof value === 'string';
}

function tagText(name: string, value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (isUnavailable(value)) {
    throw new UnrepresentableError(`tag column ${JSON.stringify(name)} is unavailable (an unchanged TOASTed value): the point cannot be addressed`);
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return keptJson(value) ?? jsonWithBigints(value);
}

function fieldValue(name: string, value: unknown, column: ColumnSchema | undefined, decimals: 'string' | 'float'): FieldValue | undefined {
  if (value === null || value === undefined || isUnavailable(value)) return undefined;
  if (typeof value === 'boolean') return { type: 'boolean', value };
  if (typeof value === 'bigint') return { type: 'integer', value };
  if (typeof value === 'number') {
    // The schema says integer or float; without one every number is a float (exact up to 2^53),
    // so that a column never switches type between rows (InfluxDB would refuse the second type).
    if (column && INTEGER_TYPES.has(column.type) && Number.isInteger(value)) return { type: 'integer', value: BigInt(value) };
    return { type: 'float', value };
  }
  if (typeof value === 'string') {
    if (decimals === 'float' && column?.semantic !== undefined && DECIMALS.has(column.semantic)) {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new UnrepresentableError(`field ${JSON.stringify(name)}: decimal ${value} is not a finite float`);
      return { type: 'float', value: n };
    }
    return { type: 'string', value };
  }
  return { type: 'string', value: keptJson(value) ?? jsonWithBigints(value) };
}

const ISO = /^([+-]\d{6}|\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d:?\d\d)?$/;

/** Nanoseconds since the epoch of an ISO-8601 text (as the decoder writes temporal columns; no zone means UTC). */
export function isoToNanos(text: string): bigint {
  const m = ISO.exec(text);
  if (!m) throw new UnrepresentableError(`timestamp ${JSON.stringify(text)} is not an ISO-8601 date-time`);
  const d = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC maps years 0-99 to 1900-1999.
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0), 0);
  let ms = d.getTime();
  if (Number.isNaN(ms)) throw new UnrepresentableError(`timestamp ${JSON.stringify(text)} is out of range`);
  const zone = m[8];
  if (zone && zone !== 'Z') {
    const z = zone.replace(':', '');
    const minutes = Number(z.slice(1, 3)) * 60 + Number(z.slice(3, 5));
    ms -= (z[0] === '-' ? -1 : 1) * minutes * 60_000;
  }
  const fraction = BigInt((m[7] ?? '').padEnd(9, '0'));
  return BigInt(ms) * 1_000_000n + fraction;
}

/** The point's time in nanoseconds: the layout's column (text, or integer count of its unit), else the commit time. */
export function pointNanos(event: ChangeEvent, row: Readonly<Row>, layout: TableLayout): bigint {
  const column = layout.timestampColumn;
  if (column === undefined) {
    const ts = event.source.tsMs;
    if (ts === undefined) throw new UnrepresentableError('the change has no source.ts_ms (commit time); set timestamp_column');
    return BigInt(ts) * 1_000_000n;
  }
  const v = row[column];
  if (v === null || v === undefined || isUnavailable(v)) {
    throw new UnrepresentableError(`timestamp column ${JSON.stringify(column)} has no value`);
  }
  return valueToNanos(column, v, layout.timestampUnit);
}

function valueToNanos(column: string, v: unknown, unit: Precision): bigint {
  if (typeof v === 'string') return /^-?\d+$/.test(v) ? BigInt(v) * nanosPer(unit) : isoToNanos(v);
  if (typeof v === 'bigint') return v * nanosPer(unit);
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v) * nanosPer(unit);
  throw new UnrepresentableError(`timestamp column ${JSON.stringify(column)}: ${String(v)} is neither an ISO-8601 text nor an integer count of ${unit}`);
}

export interface PointParts {
  readonly measurement: string;
  readonly tags: readonly (readonly [string, string])[];
  readonly fields: readonly (readonly [string, FieldValue])[];
  readonly nanos: bigint;
}

function columnIndex(event: ChangeEvent): Map<string, ColumnSchema> | undefined {
  return event.columns ? new Map(event.columns.map((c) => [c.name, c])) : undefined;
}

/** Which columns of the row are tags: the layout's list, else the key columns (key_as_tags) and strings/enums. */
function tagColumns(event: ChangeEvent, row: Readonly<Row>, layout: TableLayout, columns: Map<string, ColumnSchema> | undefined): Set<string> {
  if (layout.tags) return new Set(layout.tags);
  const tags = new Set<string>();
  if (layout.keyAsTags && event.key) for (const k of Object.keys(event.key)) tags.add(k);
  for (const [name, value] of Object.entries(row)) if (isTagByType(value, columns?.get(name))) tags.add(name);
  if (layout.timestampColumn !== undefined) tags.delete(layout.timestampColumn);
  return tags;
}

/** A row as a point: measurement, tags, fields and time in nanoseconds. Throws UnrepresentableError. */
export function rowToPoint(event: ChangeEvent, row: Readonly<Row>, layout: TableLayout): PointParts {
  const columns = columnIndex(event);
  const tagSet = tagColumns(event, row, layout, columns);
  const tags: [string, string][] = [];
  for (const name of tagSet) {
    const text = tagText(name, row[name] ?? event.key?.[name]);
    if (text !== undefined) tags.push([name, text]);
  }
  const fieldNames = layout.fields ?? Object.keys(row).filter((n) => !tagSet.has(n) && n !== layout.timestampColumn);
  const fields: [string, FieldValue][] = [];
  for (const name of fieldNames) {
    const v = fieldValue(name, row[name], columns?.get(name), layout.decimals);
    if (v) fields.push([name, v]);
  }
  return { measurement: measurementFor(layout.measurement, event.table), tags, fields, nanos: pointNanos(event, row, layout) };
}

/** The tags and time that address a deleted row's point: from its before image, else its key. */
export function deletedPoint(event: ChangeEvent, layout: TableLayout): Omit<PointParts, 'fields'> {
  const row: Readonly<Row> = { ...event.key, ...event.before };
  const { measurement, tags, nanos } = rowToPoint(event, row, layout);
  if (tags.length === 0) {
    throw new UnrepresentableError('the deleted row has no tag value (before image and key): deleting by time alone would remove other rows\' points');
  }
  return { measurement, tags, nanos };
}
