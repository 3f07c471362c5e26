import avsc from 'avsc';
import { SEMANTIC } from './connect-schema.ts';
import { EXACT_LONG } from './avro-long.ts';

/**
 * Compiles an Avro schema, once per registry schema id, into the two things the Avro route needs:
 *
 * - the Kafka Connect schema block JsonConverter would have written for the same data (what Kafka
 *   Connect's AvroConverter reads the Avro schema back into), so that the JSON decoder compiles it
 *   like any other: Debezium's `connect.name` / `connect.parameters` / `connect.version` attributes
 *   give the semantic types (io.debezium.time.MicroTimestamp, …Decimal with its scale, Json…), Avro
 *   logical types (decimal, date, timestamp-micros…) map to the Connect types they stand for;
 * - a reader from Avro binary to the JSON payload form JsonConverter writes: bytes and fixed as
 *   base64, unions unwrapped, longs exact (see avro-long.ts), floats printed as Java prints a float,
 *   NaN and the infinities as the strings PostgreSQL reads.
 *
 * The reader is avsc's compiled decoder plus a converter that visits only the fields that need any
 * work (bytes, floats, multi-branch unions and what contains them), planned here once.
 */

type JsonObject = Record<string, unknown>;
type Convert = (value: unknown) => unknown;
type AvroSchemaInput = Parameters<typeof avsc.Type.forSchema>[0];

/** A node of a Kafka Connect JSON schema block, as JsonConverter writes it. */
export interface ConnectSchema {
  readonly type: string;
  readonly fields?: readonly ConnectSchema[];
  readonly items?: ConnectSchema;
  readonly keys?: ConnectSchema;
  readonly values?: ConnectSchema;
  readonly optional: boolean;
  readonly name?: string;
  readonly version?: number;
  readonly parameters?: Readonly<Record<string, string>>;
  /** Set on the members of a struct's `fields`. */
  readonly field?: string;
}

export interface CompiledAvroSchema {
  /** The Connect schema block. */
  readonly connect: ConnectSchema;
  /** The Connect schema block as compact JSON text, ready to be framed with a payload. */
  readonly connectJson: string;
  /** avsc's type for the schema, with exact longs. */
  readonly type: avsc.Type;
  /**
   * The JSON payload form of the Avro body that starts at `offset` and must end where `bytes` ends.
   * Throws AvroSchemaProblem for a truncated body or trailing bytes, avsc's errors for corrupt ones.
   */
  read(bytes: Buffer, offset: number): unknown;
}

/** An Avro schema this module cannot turn into a Connect schema, or a body it cannot read. */
export class AvroSchemaProblem extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AvroSchemaProblem';
  }
}

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
/** Confluent's AvroConverter: the record name of an unnamed Connect struct, and of a union struct. */
const CONNECT_DEFAULT = /^io\.confluent\.connect\.avro\.ConnectDefault\d*$/;
const CONNECT_UNION = 'io.confluent.connect.avro.Union';

/** Avro logical types and the Connect semantic type each stands for, per underlying Avro type. */
const LOGICAL: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  int: { date: SEMANTIC.connectDate, 'time-millis': SEMANTIC.connectTime },
  long: {
    'timestamp-millis': SEMANTIC.connectTimestamp,
    'timestamp-micros': SEMANTIC.microTimestamp,
    'local-timestamp-millis': SEMANTIC.timestamp,
    'local-timestamp-micros': SEMANTIC.microTimestamp,
    'time-micros': SEMANTIC.microTime,
  },
  string: { uuid: 'io.debezium.data.Uuid' },
};

interface Compiled {
  /** The node, `optional: false`; a union with null makes the place that holds it optional. */
  readonly connect: ConnectSchema;
  readonly optional: boolean;
  readonly convert: Convert | undefined;
  /** avsc's branch name of the type: its full name when named, else its type name. */
  readonly branch: string;
}

interface NamedType {
  readonly fullName: string;
  compiled: Compiled | undefined;
}

interface Context {
  readonly named: Map<string, NamedType>;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function isNullSchema(v: unknown): boolean {
  return v === 'null' || (isObject(v) && v['type'] === 'null');
}

function stringParameters(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObject(v)) for (const k in v) if (typeof v[k] === 'string') out[k] = v[k];
  return out;
}

// --- values -----------------------------------------------------------------------------------

function base64(v: unknown): unknown {
  return Buffer.isBuffer(v) ? v.toString('base64') : v;
}

function nonFinite(v: number): string {
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

/**
 * The shortest decimal that reads back as the same float32: what Java's Float.toString (and so
 * JsonConverter) prints; avsc widens the float to a double, which would print 0.1f as 0.10000000149011612.
 */
function float32(v: unknown): unknown {
  if (typeof v !== 'number') return v;
  if (!Number.isFinite(v)) return nonFinite(v);
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(v.toPrecision(digits));
    if (Math.fround(shorter) === v) return shorter;
  }
  return v;
}

/** JSON has no NaN or infinities; PostgreSQL reads these strings into real and double columns. */
function float64(v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? nonFinite(v) : v;
}

// --- schema -----------------------------------------------------------------------------------

function fullNameOf(node: JsonObject, namespace: string | undefined, what: string): { fullName: string; namespace: string | undefined } {
  const name = str(node['name']);
  if (!name) throw new AvroSchemaProblem(`${what} without a name`);
  const dot = name.lastIndexOf('.');
  if (dot >= 0) return { fullName: name, namespace: name.slice(0, dot) };
  const own = node['namespace'];
  const ns = typeof own === 'string' ? own || undefined : namespace;
  return { fullName: ns ? `${ns}.${name}` : name, namespace: ns };
}

function define(ctx: Context, fullName: string): NamedType {
  if (ctx.named.has(fullName)) throw new AvroSchemaProblem(`type ${fullName} is defined twice`);
  const named: NamedType = { fullName, compiled: undefined };
  ctx.named.set(fullName, named);
  return named;
}

function reference(name: string, namespace: string | undefined, ctx: Context): Compiled {
  const named = (!name.includes('.') && namespace ? ctx.named.get(`${namespace}.${name}`) : undefined) ?? ctx.named.get(name);
  if (!named) throw new AvroSchemaProblem(`unknown type ${name} (schema references are not supported)`);
  if (!named.compiled) throw new AvroSchemaProblem(`type ${named.fullName} contains itself: a Connect schema cannot`);
  return named.compiled;
}

function primitive(type: string, attrs: JsonObject): Compiled {
  let connectType: string;
  let convert: Convert | undefined;
  switch (type) {
    case 'boolean':
    case 'string':
    case 'bytes':
      connectType = type;
      break;
    case 'int': {
      // Connect's AvroConverter keeps int8 and int16 (Avro has neither) in `connect.type`.
      const declared = attrs['connect.type'];
      connectType = declared === 'int8' || declared === 'int16' ? declared : 'int32';
      break;
    }
    case 'long':
      connectType = 'int64';
      break;
    case 'float':
      connectType = 'float';
      convert = float32;
      break;
    case 'double':
      connectType = 'double';
      convert = float64;
      break;
    default:
      throw new AvroSchemaProblem(`a ${type} outside a union has no Connect type`);
  }
  if (type === 'bytes') convert = base64;
  return { connect: semantic({ type: connectType, optional: false }, type, attrs), optional: false, convert, branch: type };
}

/** Adds the semantic name, version and parameters that `attrs` declares to a Connect node. */
function semantic(base: ConnectSchema, avroType: string, attrs: JsonObject): ConnectSchema {
  const logical = str(attrs['logicalType']);
  let name = str(attrs['connect.name']);
  const parameters = stringParameters(attrs['connect.parameters']);
  const isDecimal = logical === 'decimal' && (avroType === 'bytes' || avroType === 'fixed');
  if (name === undefined && logical !== undefined) name = isDecimal ? SEMANTIC.decimal : LOGICAL[avroType]?.[logical];
  if (name === SEMANTIC.decimal) {
    // connect.parameters wins; a plain Avro decimal carries its scale and precision as attributes.
    const scale = attrs['scale'];
    const precision = attrs['precision'];
    if (parameters['scale'] === undefined) parameters['scale'] = String(typeof scale === 'number' ? scale : 0);
    if (parameters['connect.decimal.precision'] === undefined && typeof precision === 'number') {
      parameters['connect.decimal.precision'] = String(precision);
    }
  }
  const version = attrs['connect.version'];
  let node: ConnectSchema = base;
  if (name !== undefined) node = { ...node, name };
  if (typeof version === 'number') node = { ...node, version };
  if (Object.keys(parameters).length > 0) node = { ...node, parameters };
  return node;
}

function optionalIn(c: Compiled, extra: { field?: string } = {}): ConnectSchema {
  return { ...c.connect, optional: c.optional, ...extra };
}

function record(node: JsonObject, namespace: string | undefined, ctx: Context): Compiled {
  const { fullName, namespace: ns } = fullNameOf(node, namespace, 'record');
  const named = define(ctx, fullName);
  const rawFields = node['fields'];
  if (!Array.isArray(rawFields)) throw new AvroSchemaProblem(`record ${fullName} has no fields array`);
  const fields: ConnectSchema[] = [];
  const plans: { readonly name: string; readonly convert: Convert }[] = [];
  for (const f of rawFields) {
    const fieldName = isObject(f) ? str(f['name']) : undefined;
    if (!isObject(f) || fieldName === undefined) throw new AvroSchemaProblem(`record ${fullName} has a field without a name`);
    let c: Compiled;
    try {
      c = compile(f['type'], ns, ctx);
    } catch (e) {
      if (e instanceof AvroSchemaProblem) e.message = `${fullName}.${fieldName}: ${e.message}`;
      throw e;
    }
    fields.push(optionalIn(c, { field: fieldName }));
    if (c.convert) plans.push({ name: fieldName, convert: c.convert });
  }
  const connectName = str(node['connect.name']) ?? (CONNECT_DEFAULT.test(fullName) ? undefined : fullName);
  let connect: ConnectSchema = { type: 'struct', fields, optional: false };
  if (connectName !== undefined) connect = { ...connect, name: connectName };
  connect = semantic(connect, 'record', { ...node, 'connect.name': undefined, logicalType: undefined });
  const convert: Convert | undefined =
    plans.length === 0
      ? undefined
      : (v) => {
          const row = v as JsonObject;
          for (let i = 0; i < plans.length; i++) {
            const plan = plans[i]!;
            const x = row[plan.name];
            if (x !== null && x !== undefined) row[plan.name] = plan.convert(x);
          }
          return row;
        };
  named.compiled = { connect, optional: false, convert, branch: fullName };
  return named.compiled;
}

function compileObject(node: JsonObject, namespace: string | undefined, ctx: Context): Compiled {
  const type = node['type'];
  if (typeof type !== 'string') return compile(type, namespace, ctx);
  switch (type) {
    case 'record':
    case 'error':
      return record(node, namespace, ctx);
    case 'enum': {
      const { fullName } = fullNameOf(node, namespace, 'enum');
      const named = define(ctx, fullName);
      const connect = semantic({ type: 'string', optional: false, name: fullName }, 'enum', node);
      named.compiled = { connect, optional: false, convert: undefined, branch: fullName };
      return named.compiled;
    }
    case 'fixed': {
      const { fullName } = fullNameOf(node, namespace, 'fixed');
      const named = define(ctx, fullName);
      named.compiled = { connect: semantic({ type: 'bytes', optional: false }, 'fixed', node), optional: false, convert: base64, branch: fullName };
      return named.compiled;
    }
    case 'array': {
      const items = compile(node['items'], namespace, ctx);
      const convertItem = items.convert;
      const convert: Convert | undefined = convertItem
        ? (v) => {
            const list = v as unknown[];
            for (let i = 0; i < list.length; i++) {
              const x = list[i];
              if (x !== null && x !== undefined) list[i] = convertItem(x);
            }
            return list;
          }
        : undefined;
      return { connect: semantic({ type: 'array', items: optionalIn(items), optional: false }, 'array', node), optional: false, convert, branch: 'array' };
    }
    case 'map': {
      const values = compile(node['values'], namespace, ctx);
      const convertValue = values.convert;
      const convert: Convert | undefined = convertValue
        ? (v) => {
            const map = v as JsonObject;
            for (const k in map) {
              const x = map[k];
              if (x !== null && x !== undefined) map[k] = convertValue(x);
            }
            return map;
          }
        : undefined;
      const connect: ConnectSchema = { type: 'map', keys: { type: 'string', optional: false }, values: optionalIn(values), optional: false };
      return { connect: semantic(connect, 'map', node), optional: false, convert, branch: 'map' };
    }
    default:
      if (PRIMITIVES.has(type)) return primitive(type, node);
      return reference(type, namespace, ctx);
  }
}

/**
 * `["null", T]` is an optional T. A union of several non-null types becomes what Connect's
 * AvroConverter makes of it: a struct named io.confluent.connect.avro.Union with one optional field
 * per branch (named after the branch's type, or its name without namespace), the value in its own
 * branch's field. avsc reads such unions wrapped (`{"<branch>": value}`, see the type hook below).
 */
function union(branches: unknown[], namespace: string | undefined, ctx: Context): Compiled {
  const hasNull = branches.some(isNullSchema);
  const compiled = branches.filter((b) => !isNullSchema(b)).map((b) => compile(b, namespace, ctx));
  const [only] = compiled;
  if (!only) throw new AvroSchemaProblem('a union of null alone has no Connect type');
  if (compiled.length === 1) return { ...only, optional: hasNull };
  const byBranch = new Map<string, { readonly field: string; readonly convert: Convert | undefined }>();
  const fields = compiled.map((c) => {
    const field = c.branch.slice(c.branch.lastIndexOf('.') + 1);
    byBranch.set(c.branch, { field, convert: c.convert });
    return { ...c.connect, optional: true, field };
  });
  const empty = Object.fromEntries(fields.map((f) => [f.field, null])) as JsonObject;
  const convert: Convert = (v) => {
    const wrapped = v as JsonObject;
    for (const key in wrapped) {
      const branch = byBranch.get(key);
      if (!branch) throw new AvroSchemaProblem(`union value in unknown branch ${key}`);
      const out = { ...empty };
      const x = wrapped[key];
      out[branch.field] = branch.convert && x !== null && x !== undefined ? branch.convert(x) : x;
      return out;
    }
    throw new AvroSchemaProblem('union value without a branch');
  };
  return { connect: { type: 'struct', fields, optional: false, name: CONNECT_UNION }, optional: hasNull, convert, branch: 'union' };
}

function compile(node: unknown, namespace: string | undefined, ctx: Context): Compiled {
  if (typeof node === 'string') return PRIMITIVES.has(node) ? primitive(node, {}) : reference(node, namespace, ctx);
  if (Array.isArray(node)) return union(node, namespace, ctx);
  if (isObject(node)) return compileObject(node, namespace, ctx);
  throw new AvroSchemaProblem(`not an Avro schema: ${JSON.stringify(node) ?? typeof node}`);
}

// --- avsc ---------------------------------------------------------------------------------------

function isLongSchema(schema: unknown): boolean {
  return schema === 'long' || (isObject(schema) && schema['type'] === 'long');
}

/**
 * Exact longs everywhere; unions of several non-null types read wrapped (which branch matters to
 * the Connect form), every other union unwrapped (`["null", T]` reads as null or the T).
 */
const typeHook: NonNullable<Parameters<typeof avsc.Type.forSchema>[1]>['typeHook'] = (schema, opts) => {
  if (isLongSchema(schema)) return EXACT_LONG;
  if (Array.isArray(schema) && schema.filter((b) => !isNullSchema(b)).length > 1) {
    return new avsc.types.WrappedUnionType(schema, opts);
  }
  return undefined;
};

/** Compiles a parsed Avro schema (the registry's `schema` text, parsed). Throws AvroSchemaProblem. */
export function compileAvroSchema(schema: unknown): CompiledAvroSchema {
  const top = compile(schema, undefined, { named: new Map() });
  const connect = top.optional ? optionalIn(top) : top.connect;
  let type: avsc.Type;
  try {
    type = avsc.Type.forSchema(schema as AvroSchemaInput, { wrapUnions: 'never', typeHook });
  } catch (e) {
    throw new AvroSchemaProblem(`avsc cannot use the schema: ${e instanceof Error ? e.message : String(e)}`);
  }
  const convert = top.convert;
  return {
    connect,
    connectJson: JSON.stringify(connect),
    type,
    read(bytes, offset) {
      const { value, offset: end } = type.decode(bytes, offset) as { value: unknown; offset: number };
      if (end < 0) throw new AvroSchemaProblem('the Avro body ends early (truncated, or not written with this schema)');
      if (end !== bytes.length) {
        throw new AvroSchemaProblem(`${bytes.length - end} byte(s) follow the Avro body (not written with this schema)`);
      }
      return convert && value !== null && value !== undefined ? convert(value) : value;
    },
  };
}
