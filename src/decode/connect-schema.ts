import { UNAVAILABLE, type ColumnSchema, type Row } from '../model/change-event.ts';
import { decimalFromBytes, decimalFromNumber, decodeBase64 } from './decimal.ts';
import { parseJsonKeepingDigits } from '../model/raw-json.ts';
import { describeJsonError } from './json-scan.ts';
import { isArrayPlaceholder, isBytesPlaceholder, isMapPlaceholder, isStringPlaceholder } from './placeholder.ts';
import {
  MICROS,
  MILLIS,
  NANOS,
  formatDate,
  formatTimeOfDay,
  formatTimestamp,
  formatTimestampBig,
  type TimeUnit,
} from './temporal.ts';

/**
 * Compiles a Kafka Connect JSON schema block (the `schema` half of JsonConverter's envelope) into
 * converters applied to rows in place: semantic types to plain values, TOAST placeholders to
 * UNAVAILABLE. Compiled once per distinct schema (see schema-cache.ts), so per row the work is one
 * loop over the columns that need any.
 */

export const SEMANTIC = {
  decimal: 'org.apache.kafka.connect.data.Decimal',
  variableScaleDecimal: 'io.debezium.data.VariableScaleDecimal',
  date: 'io.debezium.time.Date',
  connectDate: 'org.apache.kafka.connect.data.Date',
  time: 'io.debezium.time.Time',
  microTime: 'io.debezium.time.MicroTime',
  nanoTime: 'io.debezium.time.NanoTime',
  connectTime: 'org.apache.kafka.connect.data.Time',
  timestamp: 'io.debezium.time.Timestamp',
  microTimestamp: 'io.debezium.time.MicroTimestamp',
  nanoTimestamp: 'io.debezium.time.NanoTimestamp',
  connectTimestamp: 'org.apache.kafka.connect.data.Timestamp',
  json: 'io.debezium.data.Json',
} as const;

/** A column value or schema the decoder cannot read; `path` is the column, e.g. 'address.zip' or 'tags[2]'. */
export class FieldProblem extends Error {
  readonly code: 'BAD_FIELD' | 'BAD_SCHEMA';
  readonly detail: string;
  path: string;

  constructor(code: 'BAD_FIELD' | 'BAD_SCHEMA', detail: string, path = '') {
    super(detail);
    this.name = 'FieldProblem';
    this.code = code;
    this.detail = detail;
    this.path = path;
  }

  /** Prefixes the path with the enclosing field name or array index as the error travels up. */
  within(segment: string): this {
    this.path = !this.path ? segment : this.path.startsWith('[') ? segment + this.path : `${segment}.${this.path}`;
    return this;
  }
}

/**
 * Thrown when a MicroTimestamp/NanoTimestamp value arrived as a number beyond 2^53, which JSON.parse
 * has already rounded (every NanoTimestamp after 1970-04-15 is). The converter first switches its
 * schema to exact mode, so the caller decodes the record again from text in which those columns'
 * integers are quoted (see CompiledSchema.quoteWideIntegers). Happens once per schema.
 */
export class NeedExactIntegers extends Error {}
const NEED_EXACT = new NeedExactIntegers('wide integers need exact parsing');

type Convert = (value: unknown) => unknown;
type RowConverter = (row: Row) => void;

export interface CompiledSchema {
  /** Converts a row (before, after or key) in place; undefined when no column needs any work. */
  readonly convertRow: RowConverter | undefined;
  /** Columns of the row struct, shared by every event with this schema. */
  readonly columns: readonly ColumnSchema[] | undefined;
  /** Whether payload text must go through quoteWideIntegers before JSON.parse. */
  readonly exact: { value: boolean };
  /** Quotes the integers of wide temporal columns so JSON.parse keeps every digit. */
  quoteWideIntegers(text: string): string;
}

interface SchemaNode {
  readonly type?: unknown;
  readonly name?: unknown;
  readonly optional?: unknown;
  readonly parameters?: unknown;
  readonly fields?: unknown;
  readonly items?: unknown;
  readonly keys?: unknown;
  readonly values?: unknown;
  readonly field?: unknown;
}

interface Context {
  readonly exact: { value: boolean };
  /** Names of wide columns (temporal and int64) at any depth: their integers can exceed 2^53. */
  readonly wide: Set<string>;
}

const PLACEHOLDER_KIND = { none: 0, string: 1, bytes: 2, array: 3, map: 4 } as const;
type PlaceholderKind = (typeof PLACEHOLDER_KIND)[keyof typeof PLACEHOLDER_KIND];

interface FieldPlan {
  readonly name: string;
  readonly placeholder: PlaceholderKind;
  readonly convert: Convert | undefined;
}

function asNode(v: unknown): SchemaNode | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as SchemaNode) : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function show(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? typeof v;
  } catch {
    text = typeof v;
  }
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

function bad(expected: string, v: unknown): FieldProblem {
  return new FieldProblem('BAD_FIELD', `expected ${expected}, got ${show(v)}`);
}

function structFields(node: SchemaNode): SchemaNode[] {
  if (!Array.isArray(node.fields)) return [];
  const out: SchemaNode[] = [];
  for (const f of node.fields) {
    const n = asNode(f);
    if (n && typeof n.field === 'string') out.push(n);
  }
  return out;
}

// --- semantic types -------------------------------------------------------------------------

function decimalScale(node: SchemaNode): number {
  const params = asNode(node.parameters) as Record<string, unknown> | undefined;
  const raw = params?.['scale'];
  const scale = typeof raw === 'string' ? Number(raw) : typeof raw === 'number' ? raw : 0;
  if (!Number.isSafeInteger(scale)) {
    throw new FieldProblem('BAD_SCHEMA', `${SEMANTIC.decimal} has a bad scale parameter ${show(raw)}`);
  }
  return scale;
}

const DECIMAL_TEXT = /^-?\d+(?:\.\d+)?$/;

function decimalOf(v: unknown, scale: number): string {
  if (typeof v === 'string') {
    const bytes = decodeBase64(v);
    const text = bytes && decimalFromBytes(bytes, scale);
    if (text !== undefined) return text;
    // Already decimal text ('12.34' is not base64). Digits-only text that happens to be valid base64
    // ('1234') is read as bytes: that is what JsonConverter writes for a Decimal.
    if (DECIMAL_TEXT.test(v)) return v;
    throw bad('base64 decimal bytes', v);
  }
  if (typeof v === 'number') return decimalFromNumber(v, scale);
  throw bad('base64 decimal bytes', v);
}

function variableScaleDecimal(v: unknown): unknown {
  const s = asNode(v) as Record<string, unknown> | undefined;
  const scale = s?.['scale'];
  if (!s || !Number.isSafeInteger(scale)) throw bad('a {scale, value} struct', v);
  return decimalOf(s['value'], scale as number);
}

function dateOf(v: unknown): string {
  if (!Number.isSafeInteger(v)) throw bad('an integer count of days', v);
  return formatDate(v as number);
}

function timeOf(unit: TimeUnit): Convert {
  return (v) => {
    if (!Number.isSafeInteger(v)) throw bad('an integer time of day', v);
    return formatTimeOfDay(v as number, unit);
  };
}

const INTEGER_TEXT = /^-?\d+$/;

function timestampOf(unit: TimeUnit, ctx: Context): Convert {
  return (v) => {
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) return formatTimestamp(v, unit);
      if (!Number.isInteger(v)) throw bad('an integer timestamp', v);
      if (!ctx.exact.value) {
        ctx.exact.value = true;
        throw NEED_EXACT;
      }
      // Already in exact mode and still rounded: the column name could not be matched in the text.
      return formatTimestampBig(BigInt(v), unit);
    }
    if (typeof v === 'string' && INTEGER_TEXT.test(v)) return formatTimestampBig(BigInt(v), unit);
    throw bad('an integer timestamp', v);
  };
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INT64_CONVERTERS = new WeakSet<Convert>();

/**
 * A plain int64 column (bigint, int8[] elements, MicroDuration…): JSON.parse rounds values beyond
 * 2^53 (9223372036854775807 would become 9223372036854776000), so such a value switches the schema
 * to exact mode, like the wide timestamps, and comes back quoted: a bigint when beyond 2^53, else
 * a number. Still rounded in exact mode (a name the quoter cannot match): refused, never rounded.
 */
function int64Of(ctx: Context): Convert {
  const convert: Convert = (v) => {
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) return v;
      if (!Number.isInteger(v)) throw bad('an int64', v);
      if (!ctx.exact.value) {
        ctx.exact.value = true;
        throw NEED_EXACT;
      }
      throw new FieldProblem('BAD_FIELD', `int64 value ${show(v)} beyond 2^53 could not be read exactly`);
    }
    if (typeof v === 'string' && INTEGER_TEXT.test(v)) {
      const n = BigInt(v);
      return n >= -MAX_SAFE && n <= MAX_SAFE ? Number(n) : n;
    }
    throw bad('an int64', v);
  };
  INT64_CONVERTERS.add(convert);
  return convert;
}

function jsonOf(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return parseJsonKeepingDigits(v);
  } catch {
    throw new FieldProblem('BAD_FIELD', `${SEMANTIC.json} value is not valid JSON: ${describeJsonError(v)}`);
  }
}

function semanticConverter(semantic: string, node: SchemaNode, ctx: Context, column: string): Convert | undefined {
  switch (semantic) {
    case SEMANTIC.decimal: {
      const scale = decimalScale(node);
      return (v) => decimalOf(v, scale);
    }
    case SEMANTIC.variableScaleDecimal:
      return variableScaleDecimal;
    case SEMANTIC.date:
    case SEMANTIC.connectDate:
      return dateOf;
    case SEMANTIC.time:
    case SEMANTIC.connectTime:
      return timeOf(MILLIS);
    case SEMANTIC.microTime:
      return timeOf(MICROS);
    case SEMANTIC.nanoTime:
      return timeOf(NANOS);
    case SEMANTIC.timestamp:
    case SEMANTIC.connectTimestamp:
      return timestampOf(MILLIS, ctx);
    case SEMANTIC.microTimestamp:
      ctx.wide.add(column);
      return timestampOf(MICROS, ctx);
    case SEMANTIC.nanoTimestamp:
      ctx.wide.add(column);
      return timestampOf(NANOS, ctx);
    case SEMANTIC.json:
      return jsonOf;
    default:
      // ZonedTimestamp, ZonedTime, Uuid, Enum, EnumSet, Interval, MicroDuration, Year, Bits, Xml…:
      // already the value sinks want (or, for geometry structs, handled as plain structs).
      return undefined;
  }
}

// --- structural types -----------------------------------------------------------------------

function compileValue(node: SchemaNode, ctx: Context, column: string): Convert | undefined {
  const semantic = str(node.name);
  if (semantic !== undefined) {
    const c = semanticConverter(semantic, node, ctx, column);
    if (c) return c;
  }
  switch (node.type) {
    case 'int64':
      ctx.wide.add(column);
      return int64Of(ctx);
    case 'struct':
      return compileStruct(node, ctx);
    case 'array':
      return compileArray(node, ctx, column);
    case 'map':
      return compileMap(node, ctx, column);
    default:
      return undefined;
  }
}

function compileFieldPlans(node: SchemaNode, ctx: Context, top: boolean): FieldPlan[] {
  const plans: FieldPlan[] = [];
  for (const f of structFields(node)) {
    const name = f.field as string;
    let convert: Convert | undefined;
    try {
      convert = compileValue(f, ctx, name);
    } catch (e) {
      throw e instanceof FieldProblem ? e.within(name) : e;
    }
    let placeholder: PlaceholderKind = PLACEHOLDER_KIND.none;
    if (top) {
      if (f.type === 'string') placeholder = PLACEHOLDER_KIND.string;
      else if (f.type === 'bytes') placeholder = PLACEHOLDER_KIND.bytes;
      else if (f.type === 'array') placeholder = PLACEHOLDER_KIND.array;
      else if (f.type === 'map') placeholder = PLACEHOLDER_KIND.map;
    }
    if (convert || placeholder !== PLACEHOLDER_KIND.none) plans.push({ name, placeholder, convert });
  }
  return plans;
}

function isPlaceholder(kind: PlaceholderKind, v: unknown): boolean {
  switch (kind) {
    case PLACEHOLDER_KIND.string:
      return isStringPlaceholder(v);
    case PLACEHOLDER_KIND.bytes:
      return isBytesPlaceholder(v);
    case PLACEHOLDER_KIND.array:
      return Array.isArray(v) && isArrayPlaceholder(v);
    case PLACEHOLDER_KIND.map:
      return typeof v === 'object' && v !== null && !Array.isArray(v) && isMapPlaceholder(v);
    default:
      return false;
  }
}

function applyPlans(plans: readonly FieldPlan[], row: Record<string, unknown>): void {
  let name = '';
  try {
    for (let i = 0; i < plans.length; i++) {
      const plan = plans[i]!;
      name = plan.name;
      const v = row[name];
      if (v === null || v === undefined) continue;
      if (plan.placeholder !== PLACEHOLDER_KIND.none && isPlaceholder(plan.placeholder, v)) {
        row[name] = UNAVAILABLE;
      } else if (plan.convert) {
        row[name] = plan.convert(v);
      }
    }
  } catch (e) {
    throw e instanceof FieldProblem ? e.within(name) : e;
  }
}

function compileStruct(node: SchemaNode, ctx: Context): Convert | undefined {
  const plans = compileFieldPlans(node, ctx, false);
  if (plans.length === 0) return undefined;
  return (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('a struct', v);
    applyPlans(plans, v as Record<string, unknown>);
    return v;
  };
}

function convertElements(list: unknown[], convert: Convert): void {
  let i = 0;
  try {
    for (; i < list.length; i++) {
      const e = list[i];
      if (e !== null && e !== undefined) list[i] = convert(e);
    }
  } catch (e) {
    throw e instanceof FieldProblem ? e.within(`[${i}]`) : e;
  }
}

/**
 * An int64 array holding a bigint holds only bigints (numbers promoted), so that sinks writing
 * bigints as decimal strings never write a mixed array such as [1, "9223372036854775807"], which
 * a typed store (Elasticsearch's dynamic mapping) refuses.
 */
function uniformInt64(list: unknown[]): void {
  if (!list.some((e) => typeof e === 'bigint')) return;
  for (let i = 0; i < list.length; i++) {
    const e = list[i];
    if (typeof e === 'number') list[i] = BigInt(e);
  }
}

function compileArray(node: SchemaNode, ctx: Context, column: string): Convert | undefined {
  const items = asNode(node.items);
  const convert = items && compileValue(items, ctx, column);
  if (!convert) return undefined;
  const int64 = INT64_CONVERTERS.has(convert);
  return (v) => {
    if (!Array.isArray(v)) throw bad('an array', v);
    convertElements(v, convert);
    if (int64) uniformInt64(v);
    return v;
  };
}

/** JsonConverter writes string-keyed maps as objects and other maps as arrays of [key, value]. */
function compileMap(node: SchemaNode, ctx: Context, column: string): Convert | undefined {
  const keys = asNode(node.keys);
  const values = asNode(node.values);
  const convertKey = keys && compileValue(keys, ctx, column);
  const convertValue = values && compileValue(values, ctx, column);
  if (!convertKey && !convertValue) return undefined;
  return (v) => {
    if (Array.isArray(v)) {
      convertElements(v, (entry) => {
        if (!Array.isArray(entry) || entry.length !== 2) throw bad('a [key, value] pair', entry);
        if (convertKey && entry[0] != null) entry[0] = convertKey(entry[0]);
        if (convertValue && entry[1] != null) entry[1] = convertValue(entry[1]);
        return entry;
      });
      return v;
    }
    if (typeof v !== 'object' || v === null) throw bad('a map', v);
    if (convertValue) {
      const m = v as Record<string, unknown>;
      let k = '';
      try {
        for (k in m) {
          const e = m[k];
          if (e !== null && e !== undefined) m[k] = convertValue(e);
        }
      } catch (e) {
        throw e instanceof FieldProblem ? e.within(k) : e;
      }
    }
    return v;
  };
}

// --- columns ----------------------------------------------------------------------------------

function stringParameters(v: unknown): Readonly<Record<string, string>> | undefined {
  const p = asNode(v) as Record<string, unknown> | undefined;
  if (!p) return undefined;
  const out: Record<string, string> = {};
  for (const k in p) {
    const x = p[k];
    if (typeof x === 'string') out[k] = x;
  }
  return Object.freeze(out);
}

function columnOf(node: SchemaNode, name: string): ColumnSchema {
  const items = node.type === 'array' ? asNode(node.items) : undefined;
  const keys = node.type === 'map' ? asNode(node.keys) : undefined;
  const values = node.type === 'map' ? asNode(node.values) : undefined;
  return Object.freeze({
    name,
    type: str(node.type) ?? 'unknown',
    semantic: str(node.name),
    optional: node.optional === true,
    parameters: stringParameters(node.parameters),
    // Array elements have no name of their own.
    items: items ? columnOf(items, '') : undefined,
    fields: node.type === 'struct' ? structFields(node).map((f) => columnOf(f, f.field as string)) : undefined,
    ...(keys && values ? { keys: columnOf(keys, ''), values: columnOf(values, '') } : {}),
  });
}

// --- entry points -----------------------------------------------------------------------------

const REGEX_SPECIAL = /[.*+?^${}()|[\]\\]/g;
// Names JsonConverter would escape in its output cannot be matched literally; they stay rounded.
const PLAIN_NAME = /^[^"\\\p{Cc}]+$/u;

function wideIntegerQuoter(names: ReadonlySet<string>): (text: string) => string {
  const literal = [...names].filter((n) => PLAIN_NAME.test(n)).map((n) => n.replace(REGEX_SPECIAL, '\\$&'));
  if (literal.length === 0) return (text) => text;
  // `"name":123` can only be a member (inside a JSON string the quotes would be escaped); so can
  // `"name":[1,null,3]`, an array column, whose integers are quoted one by one. The lookahead keeps
  // floats and exponents out. A same-named field elsewhere in the envelope gets its integers quoted
  // too (a column named ts_ms quotes the envelope's ts_ms, which is then ignored): acceptable, and
  // only once a wide value was seen.
  const re = new RegExp(`("(?:${literal.join('|')})"\\s*:\\s*)(-?\\d+|\\[[-\\d\\s,nul]*\\])(?=\\s*[,}\\]])`, 'g');
  const quote = (_m: string, head: string, v: string) =>
    v.charCodeAt(0) === 0x5b ? head + v.replace(/-?\d+/g, '"$&"') : `${head}"${v}"`;
  return (text) => text.replace(re, quote);
}

function finish(rowNode: SchemaNode | undefined, ctx: Context, top: boolean): CompiledSchema {
  const plans = rowNode ? compileFieldPlans(rowNode, ctx, top) : [];
  const columns = rowNode ? Object.freeze(structFields(rowNode).map((f) => columnOf(f, f.field as string))) : undefined;
  return {
    convertRow: plans.length > 0 ? (row) => applyPlans(plans, row) : undefined,
    columns,
    exact: ctx.exact,
    quoteWideIntegers: wideIntegerQuoter(ctx.wide),
  };
}

function newContext(): Context {
  return { exact: { value: false }, wide: new Set() };
}

/**
 * A Debezium envelope's value schema: converters for its row struct (`after`, or `before` when there
 * is no `after` field; Debezium gives both the same `<topic>.Value` schema). Schemas without a row
 * struct (heartbeats, transaction records) compile to no converter and no columns.
 */
export function compileValueSchema(schema: unknown): CompiledSchema {
  const node = asNode(schema);
  const fields = node ? structFields(node) : [];
  const row =
    fields.find((f) => f.field === 'after' && f.type === 'struct') ??
    fields.find((f) => f.field === 'before' && f.type === 'struct');
  return finish(row, newContext(), true);
}

/** A record key's schema: a struct of key columns (anything else converts nothing). */
export function compileKeySchema(schema: unknown): CompiledSchema {
  const node = asNode(schema);
  const ctx = newContext();
  if (!node || node.type !== 'struct') return finish(undefined, ctx, false);
  // Not top-level columns: key columns are never TOASTed, so no placeholder checks.
  const compiled = finish(node, ctx, false);
  // Keys are not listed as columns: the value's columns describe the row.
  return { ...compiled, columns: undefined };
}
