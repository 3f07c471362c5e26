import { isUnavailable, type ColumnSchema } from '../../src/model/change-event.ts';
import { keptJson } from '../../src/model/raw-json.ts';

/**
 * Types of the columns the sink creates, and how event values become the text PostgreSQL parses.
 * Every value travels as an element of an array literal that the server parses with the column
 * type's input function: one conversion path for every type, exact for decimals and timestamps (no
 * float or Date on the way).
 */

const SEMANTIC_TYPES: Readonly<Record<string, string>> = {
  'org.apache.kafka.connect.data.Decimal': 'numeric',
  'io.debezium.data.VariableScaleDecimal': 'numeric',
  'io.debezium.time.Timestamp': 'timestamp',
  'io.debezium.time.MicroTimestamp': 'timestamp',
  'io.debezium.time.NanoTimestamp': 'timestamp',
  'org.apache.kafka.connect.data.Timestamp': 'timestamp',
  'io.debezium.time.ZonedTimestamp': 'timestamptz',
  'io.debezium.time.Date': 'date',
  'org.apache.kafka.connect.data.Date': 'date',
  'io.debezium.time.Time': 'time',
  'io.debezium.time.MicroTime': 'time',
  'io.debezium.time.NanoTime': 'time',
  'org.apache.kafka.connect.data.Time': 'time',
  'io.debezium.time.ZonedTime': 'timetz',
  'io.debezium.data.Json': 'jsonb',
  'io.debezium.data.Uuid': 'uuid',
};

const CONNECT_TYPES: Readonly<Record<string, string>> = {
  int8: 'smallint',
  int16: 'smallint',
  int32: 'integer',
  int64: 'bigint',
  float32: 'real',
  float64: 'double precision',
  // JsonConverter's schema block names the float types `float` and `double` (Schema.Type's
  // FLOAT32/FLOAT64 are the names other converters use).
  float: 'real',
  double: 'double precision',
  boolean: 'boolean',
  string: 'text',
  bytes: 'bytea',
  map: 'jsonb',
  struct: 'jsonb',
};

/** The column type for a Debezium column schema. Arrays of arrays or of structs become jsonb. */
export function pgTypeOfSchema(col: ColumnSchema): string {
  const semantic = col.semantic ? SEMANTIC_TYPES[col.semantic] : undefined;
  if (semantic) return semantic;
  if (col.type === 'array') {
    const items = col.items;
    if (!items || items.type === 'array' || items.type === 'map' || items.type === 'struct') return 'jsonb';
    return `${pgTypeOfSchema(items)}[]`;
  }
  return CONNECT_TYPES[col.type] ?? 'text';
}

/**
 * The column type for values seen without a schema: whole numbers bigint (double precision as soon
 * as one is fractional or beyond 2^53), strings text, booleans boolean, objects and arrays jsonb;
 * a mix of kinds is text (or jsonb when objects are part of it).
 */
export function inferPgType(values: Iterable<unknown>): string {
  let ints = false;
  let floats = false;
  let bigints = false;
  let bools = false;
  let strings = false;
  let objects = false;
  for (const v of values) {
    if (v === null || v === undefined || isUnavailable(v)) continue;
    switch (typeof v) {
      case 'number':
        if (Number.isSafeInteger(v)) ints = true;
        else floats = true;
        break;
      case 'bigint':
        bigints = true;
        break;
      case 'boolean':
        bools = true;
        break;
      case 'string':
        strings = true;
        break;
      default:
        objects = true;
    }
  }
  const numeric = ints || floats || bigints;
  const kinds = [numeric, bools, strings, objects].filter(Boolean).length;
  if (kinds === 0) return 'text';
  if (kinds > 1) return objects ? 'jsonb' : 'text';
  if (objects) return 'jsonb';
  if (bools) return 'boolean';
  if (strings) return 'text';
  if (floats) return bigints ? 'numeric' : 'double precision';
  return bigints ? 'numeric' : 'bigint';
}

/** How values are written as text for a column, from its (base) type in the catalog. */
export type ValueKind = 'text' | 'json' | 'bytea' | 'datetime';

export interface Codec {
  readonly kind: ValueKind;
  /** The column is an array of `kind`. */
  readonly array: boolean;
}

function kindOf(typname: string): ValueKind {
  switch (typname) {
    case 'json':
    case 'jsonb':
      return 'json';
    case 'bytea':
      return 'bytea';
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return 'datetime';
    default:
      return 'text';
  }
}

/** `typname` and, for arrays, `elemTypname` as pg_type names them (int4, _int4 / int4, jsonb…). */
export function codecFor(typname: string, elemTypname: string | null | undefined): Codec {
  return elemTypname ? { kind: kindOf(elemTypname), array: true } : { kind: kindOf(typname), array: false };
}

function bigintSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/**
 * The decoder writes years outside 0000-9999 as ECMAScript expanded years ('+010000', '-000001') and
 * year 0 for 1 BC (astronomical numbering); PostgreSQL wants '10000-…' and '0001-… BC'.
 */
const EXPANDED_YEAR = /^([+-]\d{6}|0000)(-.*)$/;

function datetimeText(text: string): string {
  const m = EXPANDED_YEAR.exec(text);
  if (!m) return text;
  const year = m[1] === '0000' ? 0 : Number(m[1]);
  if (year > 0) return `${year}${m[2]}`;
  return `${String(1 - year).padStart(4, '0')}${m[2]} BC`;
}

function bytesText(v: unknown): string {
  if (typeof v === 'string') return `\\x${Buffer.from(v, 'base64').toString('hex')}`;
  if (v instanceof Uint8Array) return `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  return String(v);
}

function scalarText(v: unknown, kind: ValueKind): string {
  switch (kind) {
    case 'json':
      return keptJson(v) ?? JSON.stringify(v, bigintSafe);
    case 'bytea':
      return bytesText(v);
    case 'datetime':
      return typeof v === 'string' ? datetimeText(v) : v instanceof Date ? v.toISOString() : String(v);
    case 'text':
      if (typeof v === 'string') return v;
      if (v instanceof Date) return v.toISOString();
      if (typeof v === 'object') return keptJson(v) ?? JSON.stringify(v, bigintSafe);
      return String(v);
  }
}

/** An array literal ('{"a","b",NULL}'); every element quoted, so no element text needs inspection. */
function arrayLiteral(items: readonly unknown[], kind: ValueKind): string {
  const parts = items.map((item) => {
    if (item === null || item === undefined) return 'NULL';
    if (Array.isArray(item)) return arrayLiteral(item, kind);
    const text = scalarText(item, kind);
    return `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  });
  return `{${parts.join(',')}}`;
}

/** The text form of a value for a column; null for SQL NULL. */
export function encodeValue(v: unknown, codec: Codec): string | null {
  if (typeof v === 'string' && codec.kind === 'text') return v; // the common case first
  if (v === null || v === undefined || isUnavailable(v)) return null;
  if (codec.array && Array.isArray(v)) return arrayLiteral(v, codec.kind);
  return scalarText(v, codec.kind);
}

/**
 * An element of a text[] literal ('{"a",NULL}'), which the sink builds itself rather than leaving it
 * to the driver: two substring searches instead of two regex replaces, and string appends, which
 * V8 joins cheaply. Every element is quoted, so none is misread (NULL, empty, commas, braces).
 */
export function arrayElement(v: string | null): string {
  if (v === null) return 'NULL';
  return v.includes('"') || v.includes('\\') ? `"${v.replace(/["\\]/g, '\\$&')}"` : `"${v}"`;
}
