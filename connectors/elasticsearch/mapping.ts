import type { ColumnSchema } from '../../src/model/change-event.ts';

/**
 * Field mappings for Elasticsearch from the Debezium (Kafka Connect) schema of a change: every
 * column gets an explicit type, so no field is typed by whichever value happens to come first.
 * The formats below accept exactly the text the decoder writes (src/decode/temporal.ts); the
 * conformance suite checks them against a real server. The README's mapping table mirrors this file.
 */

/** How a Json (or Connect map) column is mapped; see the README. */
export const JSON_MODES = ['flattened', 'disabled', 'object'] as const;
export type JsonMode = (typeof JSON_MODES)[number];

/** One field's mapping, as sent in `properties` and read back from GET _mapping. */
export type FieldMapping = Readonly<Record<string, unknown>>;

/** Strings up to this many characters are also indexed as a keyword (sorting, terms, exact match). */
export const KEYWORD_IGNORE_ABOVE = 256;
/** Debezium's column.propagate.source.type adds the declared length of a column as this parameter. */
const SOURCE_LENGTH = '__debezium.source.column.length';

/**
 * First the decoder's own text ('uuuu' reads the expanded years, '+010000' and '-000001', that it
 * writes outside 0000-9999), then any ISO-8601 form, for values a table handler writes itself.
 */
const ISO = 'strict_date_optional_time_nanos';
const DATE_FORMAT = `uuuu-MM-dd||${ISO}`;
const timestampFormat = (digits: number) => `uuuu-MM-dd'T'HH:mm:ss.${'S'.repeat(digits)}||${ISO}`;

/**
 * Lucene refuses a term over 32766 bytes, and with it the whole document: longer values of a keyword
 * or flattened field stay in `_source` but are not indexed (8191 characters of up to 4 UTF-8 bytes fit).
 */
const MAX_TERM_CHARS = 8191;
const KEYWORD: FieldMapping = { type: 'keyword', ignore_above: MAX_TERM_CHARS };
const TEXT: FieldMapping = { type: 'text', fields: { keyword: { type: 'keyword', ignore_above: KEYWORD_IGNORE_ABOVE } } };
const BINARY: FieldMapping = { type: 'binary' };
/**
 * Decimals as `double`: Elasticsearch parses the exact decimal text (coerce) into the index, and
 * `_source` keeps the text, so range queries, sorting and aggregations work (to a double's 15-17
 * significant digits) and every digit stays readable. Not `scaled_float`: it is a long underneath
 * (a numeric(38,10) overflows it beyond 9.2e8) and lives in the mapper-extras module, which not
 * every distribution ships. A table's `mapping` can still choose it for a column.
 */
const DECIMAL: FieldMapping = { type: 'double' };

/**
 * A point in time: `date` (milliseconds, years -292275054..292278993) holds every value the decoder
 * writes, also before 1970 and after 2262; sub-millisecond precision is indexed in the `nanos`
 * sub-field (`date_nanos`, 1970..2262 only: values outside are kept in `_source`, left out of that
 * sub-field and listed in the document's `_ignored`).
 */
function instant(format: string, extra: FieldMapping = {}): FieldMapping {
  return { type: 'date', format, ...extra, fields: { nanos: { type: 'date_nanos', format, ignore_malformed: true } } };
}

/**
 * Zoned values are Debezium's own text (ISO-8601 with an offset, 0-9 fraction digits), passed through
 * unchanged: `ignore_malformed` keeps a row whose value no format reads (PostgreSQL's 'infinity', a year
 * past 9999) instead of refusing it; that value is in `_source` and `_ignored`, not in the index.
 */
const ZONED_TIMESTAMP = instant(ISO, { ignore_malformed: true });
const ZONED_TIME = instant('strict_time||strict_time_no_millis', { ignore_malformed: true });

const PLAIN: Readonly<Record<string, FieldMapping>> = {
  int8: { type: 'byte' },
  int16: { type: 'short' },
  int32: { type: 'integer' },
  int64: { type: 'long' },
  float: { type: 'float' },
  double: { type: 'double' },
  boolean: { type: 'boolean' },
  bytes: BINARY,
};

/**
 * Semantic types whose value is not the Connect type's own: the decoder rewrites them (decimals to
 * exact text, temporal integers to ISO-8601 text, Json text to a value) or Debezium sends text that
 * is better served by another type. Semantic types not listed keep their Connect type's mapping
 * (MicroDuration: long; Year: integer; Bits: binary; geometry: its struct).
 */
const SEMANTIC: Readonly<Record<string, FieldMapping>> = {
  'org.apache.kafka.connect.data.Decimal': DECIMAL,
  'io.debezium.data.VariableScaleDecimal': DECIMAL,
  'io.debezium.time.Date': { type: 'date', format: DATE_FORMAT },
  'org.apache.kafka.connect.data.Date': { type: 'date', format: DATE_FORMAT },
  'io.debezium.time.Timestamp': { type: 'date', format: timestampFormat(3) },
  'org.apache.kafka.connect.data.Timestamp': { type: 'date', format: timestampFormat(3) },
  'io.debezium.time.MicroTimestamp': instant(timestampFormat(6)),
  'io.debezium.time.NanoTimestamp': instant(timestampFormat(9)),
  'io.debezium.time.ZonedTimestamp': ZONED_TIMESTAMP,
  'io.debezium.time.ZonedTime': ZONED_TIME,
  // 'HH:MM:SS.fff' with the type's fraction width: sorts as text for every PostgreSQL time
  // (00:00:00 to 24:00:00), which a `date` cannot hold (24:00:00).
  'io.debezium.time.Time': KEYWORD,
  'org.apache.kafka.connect.data.Time': KEYWORD,
  'io.debezium.time.MicroTime': KEYWORD,
  'io.debezium.time.NanoTime': KEYWORD,
  // ISO-8601 durations ('P1Y2M3DT4H5M6.78S') do not sort as text, nor at all (a month has no fixed
  // length); interval.handling.mode=numeric (MicroDuration, a long) is the sortable form.
  'io.debezium.time.Interval': KEYWORD,
  'io.debezium.data.Uuid': KEYWORD,
  'io.debezium.data.Enum': KEYWORD,
  'io.debezium.data.EnumSet': KEYWORD,
  'io.debezium.data.Ltree': KEYWORD,
  'io.debezium.data.Xml': { type: 'text' },
};

const JSON_SEMANTIC = 'io.debezium.data.Json';

/**
 * flattened: one field for the whole value, every leaf indexed as a keyword (term, range, exists
 * queries on `col.some.key`); any keys, mixed types, no mapping growth. Takes objects, arrays of
 * objects and null, not a bare scalar. disabled: kept in `_source`, not indexed; takes any JSON.
 * object: dynamic mapping inside the column (one mapped field per key, typed by its first value).
 */
function jsonMapping(mode: JsonMode): FieldMapping {
  switch (mode) {
    case 'flattened':
      return { type: 'flattened', ignore_above: MAX_TERM_CHARS };
    case 'disabled':
      return { type: 'object', enabled: false };
    case 'object':
      return { type: 'object', dynamic: true };
  }
}

function stringMapping(column: ColumnSchema): FieldMapping {
  const length = Number(column.parameters?.[SOURCE_LENGTH]);
  return Number.isInteger(length) && length > 0 && length <= KEYWORD_IGNORE_ABOVE ? KEYWORD : TEXT;
}

/** The mapping of one column (or array element: arrays are mapped by their element type). */
export function fieldMapping(column: ColumnSchema, json: JsonMode): FieldMapping {
  if (column.semantic === JSON_SEMANTIC) return jsonMapping(json);
  const semantic = column.semantic !== undefined ? SEMANTIC[column.semantic] : undefined;
  if (semantic) return semantic;
  switch (column.type) {
    case 'string':
      return stringMapping(column);
    case 'array':
      // An array of arrays is still a flat list of values to Elasticsearch.
      return column.items ? fieldMapping(column.items, json) : { type: 'object', enabled: false };
    case 'map':
      // Keys are data, as in Json.
      return jsonMapping(json);
    case 'struct':
      return column.fields ? { properties: mappingFromColumns(column.fields, () => json) } : { type: 'object', enabled: false };
    default:
      return PLAIN[column.type] ?? { type: 'object', enabled: false };
  }
}

/** `properties` for the columns of a change; `jsonMode` says how each Json or map column is mapped. */
export function mappingFromColumns(columns: readonly ColumnSchema[], jsonMode: (column: string) => JsonMode): Record<string, FieldMapping> {
  const properties: Record<string, FieldMapping> = {};
  for (const c of columns) properties[c.name] = fieldMapping(c, jsonMode(c.name));
  return properties;
}

/** A field whose existing mapping cannot hold what its column sends. */
export interface MappingConflict {
  readonly field: string;
  readonly existing: string;
  readonly wanted: string;
}

/** A mapping without a type is an object (one with only `properties`). */
const typeOf = (m: FieldMapping): string => {
  const t = m['type'];
  return typeof t === 'string' ? t : 'object';
};

const INTEGERS = ['byte', 'short', 'integer', 'long'];
/**
 * Existing types that hold every value of a wanted type without loss or refusal (a wider integer,
 * a double for a float, text for a keyword and back), beyond the wanted type itself.
 */
const ALSO_HOLDS: Readonly<Record<string, readonly string[]>> = {
  byte: ['short', 'integer', 'long'],
  short: ['integer', 'long'],
  integer: ['long'],
  float: ['double'],
  double: ['scaled_float'],
  keyword: ['text', 'wildcard', 'match_only_text'],
  text: ['keyword', 'wildcard', 'match_only_text'],
  date: ['date_nanos'],
  binary: [],
  boolean: [],
  flattened: [],
  object: ['nested', 'flattened'],
};

function holds(existing: string, wanted: string): boolean {
  if (existing === wanted) return true;
  if (INTEGERS.includes(wanted) && !INTEGERS.includes(existing)) return false;
  return ALSO_HOLDS[wanted]?.includes(existing) ?? false;
}

/**
 * Fields of `wanted` that `existing` maps to a type that cannot hold their values, e.g. a decimal
 * column on a field dynamic mapping made `text`, or an integer column on a `keyword`. Sub-fields and
 * formats are not compared. Fields missing from `existing` are not conflicts (see missingFields).
 */
export function mappingConflicts(existing: Readonly<Record<string, FieldMapping>>, wanted: Readonly<Record<string, FieldMapping>>, prefix = ''): MappingConflict[] {
  const out: MappingConflict[] = [];
  for (const [name, w] of Object.entries(wanted)) {
    const e = existing[name];
    if (e === undefined) continue;
    const [et, wt] = [typeOf(e), typeOf(w)];
    const field = prefix + name;
    if (!holds(et, wt)) {
      out.push({ field, existing: et, wanted: wt });
      continue;
    }
    const [ep, wp] = [e['properties'], w['properties']];
    if (isMapping(ep) && isMapping(wp)) out.push(...mappingConflicts(ep, wp, `${field}.`));
  }
  return out;
}

/** The fields of `wanted` (at any depth of a struct) that `existing` lacks, as a `properties` to PUT. */
export function missingFields(existing: Readonly<Record<string, FieldMapping>>, wanted: Readonly<Record<string, FieldMapping>>): Record<string, FieldMapping> {
  const out: Record<string, FieldMapping> = {};
  for (const [name, w] of Object.entries(wanted)) {
    const e = existing[name];
    if (e === undefined) {
      out[name] = w;
      continue;
    }
    const [ep, wp] = [e['properties'], w['properties']];
    if (isMapping(wp)) {
      const inner = missingFields(isMapping(ep) ? ep : {}, wp);
      if (Object.keys(inner).length > 0) out[name] = { properties: inner };
    }
  }
  return out;
}

/** Adds `add` (from missingFields) into `target`, struct by struct. */
export function mergeProperties(target: Record<string, FieldMapping>, add: Readonly<Record<string, FieldMapping>>): void {
  for (const [name, a] of Object.entries(add)) {
    const t = target[name];
    const [tp, ap] = [t?.['properties'], a['properties']];
    if (t && isMapping(tp) && isMapping(ap)) {
      const merged = { ...tp };
      mergeProperties(merged, ap);
      target[name] = { ...t, properties: merged };
    } else target[name] = a;
  }
}

function isMapping(v: unknown): v is Record<string, FieldMapping> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function describeConflict(c: MappingConflict): string {
  return `field [${c.field}] is mapped as [${c.existing}] but its column needs [${c.wanted}]`;
}
