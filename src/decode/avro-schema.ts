import avsc from 'avsc';
import {
  readArray,
  readBoolean,
  readBytes,
  readDouble,
  readEnum,
  readFixed,
  readFloat,
  readInt,
  readLong,
  readMap,
  readNull,
  readPair,
  readRecord,
  readString,
  readUnion,
  readUnionMember,
  transcode,
  KIND,
  type FieldPlan,
  type Kind,
  type Reader,
} from './avro-json.ts';
import { EXACT_LONG } from './avro-long.ts';
import { SEMANTIC } from './connect-schema.ts';

/**
 * Compiles an Avro schema, once per registry schema id, into what the Avro route needs:
 *
 * - the Kafka Connect schema block JsonConverter would have written for the same data (what Kafka
 *   Connect's AvroConverter reads the Avro schema back into), so that the JSON decoder compiles it
 *   like any other: Debezium's `connect.name` / `connect.parameters` / `connect.version` attributes
 *   give the semantic types (io.debezium.time.MicroTimestamp, …Decimal with its scale, Json…), Avro
 *   logical types (decimal with its scale, date, timestamp-micros…) the Connect types they stand for;
 * - a reader from Avro binary straight to the JSON payload bytes JsonConverter writes (see
 *   avro-json.ts): a tree of closures, one per schema node, planned here; no per-record schema work.
 *
 * Why not avsc's decoder: its long throws past 2^53 (every NanoTimestamp, Debezium's own ts_ns);
 * the exact long it allows (`LongType.__with`) slices a Buffer per long; and its objects would still
 * need a walk (bytes to base64, floats) and a JSON.stringify. On a Debezium envelope, avsc with
 * exact longs plus JSON.stringify alone took 2.5 to 3 times as long as this reader. avsc still
 * builds the schema's type (it validates the schema, and the registry client wants one), and tests
 * encode with it.
 */

type JsonObject = Record<string, unknown>;
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
  /** avsc's type for the schema (exact longs, unions unwrapped): for the registry client and for encoding. */
  readonly type: avsc.Type;
  /**
   * `head`, the JSON payload of the Avro body that starts at `offset` and ends where `bytes` ends,
   * and `tail`, as one new buffer. Throws AvroBodyProblem when the bytes are not such a body
   * (truncated, trailing bytes, a bad union index, enum index or boolean).
   */
  transcode(bytes: Buffer, offset: number, head: Uint8Array, tail: Uint8Array): Buffer;
  /** The JSON payload text alone (tests, tools). */
  readJson(bytes: Buffer, offset: number): string;
}

/** An Avro schema this module cannot turn into a Connect schema. */
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

// --- schema -----------------------------------------------------------------------------------

interface Compiled {
  /** The node, `optional: false`; a union with null makes the place that holds it optional. */
  readonly connect: ConnectSchema;
  readonly optional: boolean;
  readonly read: Reader;
  /** A primitive's kind (also behind a union with null), else KIND.other. */
  readonly kind: Kind;
  /** When the type is a primitive in a union with null: null's branch index, else -1. */
  readonly nullIndex: number;
  /** Fewest bytes a value takes (bounds block counts of corrupt bodies). */
  readonly minBytes: number;
  /** avsc's branch name of the type: its full name when named, else its type name. */
  readonly branch: string;
  /** A record's fields, compiled. */
  readonly members?: readonly Compiled[];
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
  if (!named.compiled) throw new AvroSchemaProblem(`type ${named.fullName} contains itself, which a Connect schema cannot`);
  return named.compiled;
}

/** Adds the semantic name, version and parameters `attrs` declares to a Connect node. */
function semantic(base: ConnectSchema, avroType: string, attrs: JsonObject): ConnectSchema {
  const logical = str(attrs['logicalType']);
  let name = str(attrs['connect.name']);
  const parameters = stringParameters(attrs['connect.parameters']);
  if (name === undefined && logical !== undefined) {
    name = logical === 'decimal' && (avroType === 'bytes' || avroType === 'fixed') ? SEMANTIC.decimal : LOGICAL[avroType]?.[logical];
  }
  if (name === SEMANTIC.decimal) {
    // connect.parameters wins; a plain Avro decimal has its scale and precision as attributes.
    const scale = attrs['scale'];
    const precision = attrs['precision'];
    if (parameters['scale'] === undefined) parameters['scale'] = String(typeof scale === 'number' ? scale : 0);
    if (parameters['connect.decimal.precision'] === undefined && typeof precision === 'number') {
      parameters['connect.decimal.precision'] = String(precision);
    }
  }
  const version = attrs['connect.version'];
  return {
    ...base,
    ...(name !== undefined ? { name } : {}),
    ...(typeof version === 'number' ? { version } : {}),
    ...(Object.keys(parameters).length > 0 ? { parameters } : {}),
  };
}

function placed(c: Compiled, field?: string): ConnectSchema {
  return { ...c.connect, optional: c.optional, ...(field !== undefined ? { field } : {}) };
}

function primitive(type: string, attrs: JsonObject): Compiled {
  let connectType: string;
  let read: Reader;
  let kind: Kind;
  let minBytes = 1;
  switch (type) {
    case 'boolean':
      connectType = 'boolean';
      read = readBoolean;
      kind = KIND.boolean;
      break;
    case 'string':
      connectType = 'string';
      read = readString;
      kind = KIND.string;
      break;
    case 'bytes':
      connectType = 'bytes';
      read = readBytes;
      kind = KIND.bytes;
      break;
    case 'int': {
      // Connect's AvroConverter keeps int8 and int16 (Avro has neither) in `connect.type`.
      const declared = attrs['connect.type'];
      connectType = declared === 'int8' || declared === 'int16' ? declared : 'int32';
      read = readInt;
      kind = KIND.int;
      break;
    }
    case 'long':
      connectType = 'int64';
      read = readLong;
      kind = KIND.long;
      break;
    case 'float':
      connectType = 'float';
      read = readFloat;
      kind = KIND.float;
      minBytes = 4;
      break;
    case 'double':
      connectType = 'double';
      read = readDouble;
      kind = KIND.double;
      minBytes = 8;
      break;
    default:
      throw new AvroSchemaProblem(`a ${type} outside a union has no Connect type`);
  }
  const connect = semantic({ type: connectType, optional: false }, type, attrs);
  return { connect, optional: false, read, kind, nullIndex: -1, minBytes, branch: type };
}

function record(node: JsonObject, namespace: string | undefined, ctx: Context): Compiled {
  const { fullName, namespace: ns } = fullNameOf(node, namespace, 'record');
  const named = define(ctx, fullName);
  const rawFields = node['fields'];
  if (!Array.isArray(rawFields)) throw new AvroSchemaProblem(`record ${fullName} has no fields array`);
  const fields: ConnectSchema[] = [];
  const plans: FieldPlan[] = [];
  const members: Compiled[] = [];
  let minBytes = 0;
  for (const f of rawFields) {
    const fieldName = isObject(f) ? str(f['name']) : undefined;
    if (!isObject(f) || fieldName === undefined) throw new AvroSchemaProblem(`record ${fullName} has a field without a name`);
    let c: Compiled;
    try {
      c = compile(f['type'], ns, ctx);
    } catch (e) {
      if (e instanceof AvroSchemaProblem && !e.message.startsWith(`${fullName}.`)) e.message = `${fullName}.${fieldName}: ${e.message}`;
      throw e;
    }
    fields.push(placed(c, fieldName));
    plans.push({ name: fieldName, kind: c.kind, nullIndex: c.nullIndex, read: c.read });
    members.push(c);
    minBytes += c.minBytes;
  }
  const connectName = str(node['connect.name']) ?? (CONNECT_DEFAULT.test(fullName) ? undefined : fullName);
  const version = node['connect.version'];
  const connect: ConnectSchema = {
    type: 'struct',
    fields,
    optional: false,
    ...(connectName !== undefined ? { name: connectName } : {}),
    ...(typeof version === 'number' ? { version } : {}),
  };
  named.compiled = { connect, optional: false, read: readRecord(plans), kind: KIND.other, nullIndex: -1, minBytes, branch: fullName, members };
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
      const symbols = node['symbols'];
      if (!Array.isArray(symbols) || !symbols.every((s) => typeof s === 'string')) {
        throw new AvroSchemaProblem(`enum ${fullName} has no symbols array`);
      }
      const connect = semantic({ type: 'string', optional: false, name: fullName }, 'enum', node);
      named.compiled = { connect, optional: false, read: readEnum(symbols as string[]), kind: KIND.other, nullIndex: -1, minBytes: 1, branch: fullName };
      return named.compiled;
    }
    case 'fixed': {
      const { fullName } = fullNameOf(node, namespace, 'fixed');
      const named = define(ctx, fullName);
      const size = node['size'];
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new AvroSchemaProblem(`fixed ${fullName} has no size`);
      const connect = semantic({ type: 'bytes', optional: false }, 'fixed', node);
      named.compiled = { connect, optional: false, read: readFixed(size), kind: KIND.other, nullIndex: -1, minBytes: size, branch: fullName };
      return named.compiled;
    }
    case 'array': {
      const entry = mapEntry(node['items'], namespace, ctx);
      if (entry) return entry;
      const items = compile(node['items'], namespace, ctx);
      const connect = semantic({ type: 'array', items: placed(items), optional: false }, 'array', node);
      return { connect, optional: false, read: readArray(items.read, items.minBytes), kind: KIND.other, nullIndex: -1, minBytes: 1, branch: 'array' };
    }
    case 'map': {
      const values = compile(node['values'], namespace, ctx);
      const connect = semantic({ type: 'map', keys: { type: 'string', optional: false }, values: placed(values), optional: false }, 'map', node);
      return { connect, optional: false, read: readMap(values.read), kind: KIND.other, nullIndex: -1, minBytes: 1, branch: 'map' };
    }
    default:
      if (PRIMITIVES.has(type)) return primitive(type, node);
      return reference(type, namespace, ctx);
  }
}

const MAP_ENTRY = /^io\.confluent\.connect\.avro\.MapEntry\d*$/;

/**
 * Connect's AvroConverter writes a map whose keys are not strings as an array of MapEntry records
 * ({key, value}); it is a Connect map again, in JsonConverter's form for such maps: [[key,value],…].
 */
function mapEntry(items: unknown, namespace: string | undefined, ctx: Context): Compiled | undefined {
  if (!isObject(items) || (items['type'] !== 'record' && items['type'] !== 'error')) return undefined;
  const { fullName } = fullNameOf(items, namespace, 'record');
  if (!MAP_ENTRY.test(fullName) && items['connect.internal.type'] !== 'MapEntry') return undefined;
  const fields = items['fields'];
  if (!Array.isArray(fields) || fields.length !== 2) return undefined;
  const [k, v] = fields as unknown[];
  if (!isObject(k) || !isObject(v) || k['name'] !== 'key' || v['name'] !== 'value') return undefined;
  const entry = record(items, namespace, ctx);
  const [keyField, valueField] = entry.connect.fields ?? [];
  const [key, value] = entry.members ?? [];
  if (!keyField || !valueField || !key || !value) throw new AvroSchemaProblem(`${fullName} is not a map entry`);
  const plan = (name: string, c: Compiled): FieldPlan => ({ name, kind: c.kind, nullIndex: c.nullIndex, read: c.read });
  const { field: _k, ...keys } = keyField;
  const { field: _v, ...values } = valueField;
  const connect: ConnectSchema = { type: 'map', keys, values, optional: false };
  return { connect, optional: false, read: readArray(readPair(plan('key', key), plan('value', value)), entry.minBytes), kind: KIND.other, nullIndex: -1, minBytes: 1, branch: 'array' };
}

/**
 * `["null", T]` (in either order) is an optional T. A union of several non-null types becomes what
 * Connect's AvroConverter makes of it: a struct named io.confluent.connect.avro.Union with one
 * optional field per branch, named after the branch's type (a named type without its namespace),
 * the value in its branch's field and null in the others.
 */
function union(branches: unknown[], namespace: string | undefined, ctx: Context): Compiled {
  if (branches.length === 0) throw new AvroSchemaProblem('an empty union');
  const compiled = branches.map((b) => (isNullSchema(b) ? undefined : compile(b, namespace, ctx)));
  const present = compiled.filter((c): c is Compiled => c !== undefined);
  const hasNull = present.length < compiled.length;
  const [only] = present;
  if (!only) throw new AvroSchemaProblem('a union of null alone has no Connect type');
  if (present.length === 1) {
    if (compiled.length === 1) return only;
    const read = readUnion(compiled.map((c) => c?.read ?? readNull));
    // ["null", T]: records read a primitive T inline (see readRecord).
    const nullIndex = compiled.length === 2 && only.kind !== KIND.other ? compiled.indexOf(undefined) : -1;
    return { ...only, optional: hasNull, read, kind: nullIndex >= 0 ? only.kind : KIND.other, nullIndex, minBytes: 1 };
  }
  const fieldNames = present.map((c) => c.branch.slice(c.branch.lastIndexOf('.') + 1));
  const fields = present.map((c, i) => ({ ...c.connect, optional: true, field: fieldNames[i]! }));
  let next = 0;
  const readers = compiled.map((c) => (c ? readUnionMember(fieldNames, next++, c.read) : readNull));
  const connect: ConnectSchema = { type: 'struct', fields, optional: false, name: CONNECT_UNION };
  return { connect, optional: hasNull, read: readUnion(readers), kind: KIND.other, nullIndex: -1, minBytes: 1, branch: 'union' };
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
 * avsc's type of the same schema: exact longs; unions of several non-null types wrapped
 * (`{"<branch>": value}`), every other union unwrapped (`["null", T]` is null or a T).
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
  const connect = top.optional ? placed(top) : top.connect;
  let type: avsc.Type;
  try {
    type = avsc.Type.forSchema(schema as AvroSchemaInput, { wrapUnions: 'never', typeHook });
  } catch (e) {
    throw new AvroSchemaProblem(`avsc cannot use the schema: ${e instanceof Error ? e.message : String(e)}`);
  }
  const read = top.read;
  const none = new Uint8Array(0);
  return {
    connect,
    connectJson: JSON.stringify(connect),
    type,
    transcode: (bytes, offset, head, tail) => transcode(read, bytes, offset, head, tail),
    readJson: (bytes, offset) => transcode(read, bytes, offset, none, none).toString('utf8'),
  };
}
