import type { ConnectSchema } from '../decode/avro-schema.ts';
import { compileAvroSchema } from '../decode/avro-schema.ts';
import { MAGIC_BYTE, WIRE_HEADER_BYTES } from '../decode/avro.ts';

/**
 * The producer side of Avro, for tests that write their own events: what Kafka Connect's
 * AvroConverter makes of a Debezium record. A Connect schema becomes an Avro schema with the
 * converter's conventions (records named after the Connect name and carrying `connect.name`;
 * semantic types as `connect.name`, `connect.version`, `connect.parameters`; Decimal also as the
 * Avro decimal logical type; int8/int16 as `connect.type`; optional as a union with null), and a
 * JsonConverter payload becomes the Avro body. Also builds Debezium PostgreSQL envelopes (schema
 * and payload) from column definitions, so one change can be written as JSON and as Avro.
 *
 * Payload values follow JsonConverter: bytes and decimals base64, temporal types as numbers; an
 * int64 may also be a bigint or a digit string (values beyond 2^53).
 */

export type ConnectInput = Omit<ConnectSchema, 'fields' | 'items' | 'keys' | 'values'> & {
  readonly fields?: readonly ConnectInput[];
  readonly items?: ConnectInput;
  readonly keys?: ConnectInput;
  readonly values?: ConnectInput;
  /** JsonConverter also writes defaults; they play no part here. */
  readonly default?: unknown;
  readonly doc?: string;
};

export type AvroSchema = string | readonly AvroSchema[] | { readonly [k: string]: unknown };

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

const AVRO_PRIMITIVE: Readonly<Record<string, string>> = {
  int8: 'int',
  int16: 'int',
  int32: 'int',
  int64: 'long',
  float: 'float',
  float32: 'float',
  double: 'double',
  float64: 'double',
  boolean: 'boolean',
  string: 'string',
  bytes: 'bytes',
};

const DECIMAL = 'org.apache.kafka.connect.data.Decimal';
/** The Avro logical type AvroConverter adds for Connect's own logical types. */
const CONNECT_LOGICAL: Readonly<Record<string, string>> = {
  'org.apache.kafka.connect.data.Date': 'date',
  'org.apache.kafka.connect.data.Time': 'time-millis',
  'org.apache.kafka.connect.data.Timestamp': 'timestamp-millis',
};

function connectAttributes(s: ConnectInput): JsonObject {
  const out: JsonObject = {};
  if (s.version !== undefined) out['connect.version'] = s.version;
  if (s.parameters !== undefined) out['connect.parameters'] = s.parameters;
  if (s.name !== undefined) out['connect.name'] = s.name;
  return out;
}

function splitName(name: string): { name: string; namespace: string | undefined } {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? { name, namespace: undefined } : { name: name.slice(dot + 1), namespace: name.slice(0, dot) };
}

/** The Avro schema AvroConverter registers for a Connect schema. */
export function avroSchemaOf(connect: ConnectInput): AvroSchema {
  const defined = new Set<string>();
  let unnamed = 0;
  let entries = 0;
  const convert = (s: ConnectInput): AvroSchema => {
    const body = required(s);
    return s.optional ? ['null', body] : body;
  };
  const required = (s: ConnectInput): AvroSchema => {
    switch (s.type) {
      case 'struct': {
        const fullName = s.name ?? `io.confluent.connect.avro.ConnectDefault${++unnamed === 1 ? '' : unnamed}`;
        if (defined.has(fullName)) return fullName;
        defined.add(fullName);
        const { name, namespace } = splitName(fullName);
        const fields = (s.fields ?? []).map((f) => ({
          name: f.field,
          type: convert(f),
          ...(f.optional ? { default: null } : {}),
        }));
        return {
          type: 'record',
          name,
          ...(namespace ? { namespace } : {}),
          fields,
          ...(s.version !== undefined ? { 'connect.version': s.version } : {}),
          ...(s.name !== undefined ? { 'connect.name': s.name } : {}),
        };
      }
      case 'array':
        if (!s.items) throw new Error('array schema without items');
        return { type: 'array', items: convert(s.items), ...connectAttributes(s) };
      case 'map': {
        if (!s.keys || !s.values) throw new Error('map schema without keys or values');
        if (s.keys.type === 'string') return { type: 'map', values: convert(s.values), ...connectAttributes(s) };
        // Other keys: an array of MapEntry records, as AvroConverter writes them.
        entries++;
        const entry = {
          type: 'record',
          name: `MapEntry${entries === 1 ? '' : entries}`,
          namespace: 'io.confluent.connect.avro',
          fields: [
            { name: 'key', type: convert(s.keys) },
            { name: 'value', type: convert(s.values), ...(s.values.optional ? { default: null } : {}) },
          ],
          'connect.internal.type': 'MapEntry',
        };
        return { type: 'array', items: entry, ...connectAttributes(s) };
      }
      default: {
        const type = AVRO_PRIMITIVE[s.type];
        if (!type) throw new Error(`no Avro type for Connect type ${s.type}`);
        const out: JsonObject = { type, ...connectAttributes(s) };
        if (s.type === 'int8' || s.type === 'int16') out['connect.type'] = s.type;
        if (s.name === DECIMAL) {
          const scale = Number(s.parameters?.['scale'] ?? 0);
          const precision = s.parameters?.['connect.decimal.precision'];
          Object.assign(out, { scale, ...(precision !== undefined ? { precision: Number(precision) } : {}), logicalType: 'decimal' });
        } else if (s.name !== undefined && CONNECT_LOGICAL[s.name]) {
          out['logicalType'] = CONNECT_LOGICAL[s.name];
        }
        return Object.keys(out).length === 1 ? type : out;
      }
    }
  };
  return required(connect);
}

/** A JsonConverter payload as the value avsc writes for the Avro schema of `connect`. */
export function avroValueOf(connect: ConnectInput, payload: unknown): unknown {
  if (payload === null || payload === undefined) {
    if (!connect.optional) throw new Error(`null for required ${connect.field ?? connect.type}`);
    return null;
  }
  switch (connect.type) {
    case 'struct': {
      if (!isObject(payload)) throw new Error(`expected an object for struct ${connect.name ?? ''}`);
      const out: JsonObject = {};
      for (const f of connect.fields ?? []) out[f.field!] = avroValueOf(f, payload[f.field!]);
      return out;
    }
    case 'array':
      if (!Array.isArray(payload)) throw new Error('expected an array');
      return payload.map((x) => avroValueOf(connect.items!, x));
    case 'map': {
      if (connect.keys?.type !== 'string') {
        // JsonConverter writes these as [[key, value], …].
        if (!Array.isArray(payload)) throw new Error('expected [key, value] pairs');
        return payload.map((pair: unknown) => {
          if (!Array.isArray(pair) || pair.length !== 2) throw new Error('expected a [key, value] pair');
          return { key: avroValueOf(connect.keys!, pair[0]), value: avroValueOf(connect.values!, pair[1]) };
        });
      }
      if (!isObject(payload)) throw new Error('expected a string-keyed map');
      const out: JsonObject = {};
      for (const k in payload) out[k] = avroValueOf(connect.values!, payload[k]);
      return out;
    }
    case 'bytes':
      if (typeof payload !== 'string') throw new Error('expected base64 bytes');
      return Buffer.from(payload, 'base64');
    case 'float':
    case 'float32':
    case 'double':
    case 'float64':
      return typeof payload === 'string' || typeof payload === 'bigint' ? Number(payload) : payload;
    default:
      return payload;
  }
}

/** The Avro body (no framing) of a JsonConverter payload. */
export function avroBodyOf(connect: ConnectInput, payload: unknown): Buffer {
  return compileAvroSchema(avroSchemaOf(connect)).type.toBuffer(avroValueOf(connect, payload));
}

/** Confluent's wire format: magic byte 0, the schema id (4 bytes, big-endian), the Avro body. */
export function confluentFrame(schemaId: number, body: Buffer): Buffer {
  const header = Buffer.alloc(WIRE_HEADER_BYTES);
  header[0] = MAGIC_BYTE;
  header.writeUInt32BE(schemaId, 1);
  return Buffer.concat([header, body]);
}

/** JsonConverter's text for a schema and payload; bigints are written as exact JSON numbers. */
export function jsonConverterText(schema: ConnectInput | null, payload: unknown): string {
  const text = JSON.stringify({ schema, payload }, (_k, v: unknown) => (typeof v === 'bigint' ? `\u0000big:${v}` : v));
  return text.replace(/"\\u0000big:(-?\d+)"/g, '$1');
}

// --- Debezium PostgreSQL envelopes ------------------------------------------------------------------

/** A column: its Connect schema with `field` set to the column name. */
export type Column = ConnectInput & { readonly field: string };

export interface TableSpec {
  /** topic.prefix of the connector; topics are <prefix>.<schema>.<table>. */
  readonly prefix: string;
  readonly schema?: string;
  readonly table: string;
  readonly columns: readonly Column[];
  /** Key column names (the primary key). */
  readonly key: readonly string[];
}

export interface ChangeInput {
  readonly op: 'c' | 'u' | 'd' | 'r';
  /** Rows in the JsonConverter payload form. */
  readonly before?: Readonly<JsonObject> | null;
  readonly after?: Readonly<JsonObject> | null;
  readonly lsn: number;
  readonly txId?: number;
  readonly tsMs?: number;
}

const int64 = (field: string, optional = true): Column => ({ type: 'int64', optional, field });
const string = (field: string, optional = true): Column => ({ type: 'string', optional, field });

const SOURCE: ConnectInput = {
  type: 'struct',
  name: 'io.debezium.connector.postgresql.Source',
  optional: false,
  fields: [
    string('version', false),
    string('connector', false),
    string('name', false),
    int64('ts_ms', false),
    { type: 'string', optional: true, name: 'io.debezium.data.Enum', version: 1, parameters: { allowed: 'true,first,first_in_data_collection,last_in_data_collection,last,false,incremental' }, field: 'snapshot' },
    string('db', false),
    string('sequence'),
    int64('ts_us'),
    int64('ts_ns'),
    string('schema', false),
    string('table', false),
    int64('txId'),
    int64('lsn'),
    int64('xmin'),
  ],
};

const TRANSACTION: Column = {
  type: 'struct',
  name: 'event.block',
  version: 1,
  optional: true,
  field: 'transaction',
  fields: [string('id', false), int64('total_order', false), int64('data_collection_order', false)],
};

/** The key and value schemas Debezium's PostgreSQL connector gives a table. */
export function debeziumSchemas(table: TableSpec): { key: ConnectInput; value: ConnectInput } {
  const base = `${table.prefix}.${table.schema ?? 'public'}.${table.table}`;
  const row: ConnectInput = { type: 'struct', name: `${base}.Value`, optional: true, fields: table.columns };
  const keyFields = table.key.map((k) => {
    const column = table.columns.find((c) => c.field === k);
    if (!column) throw new Error(`key column ${k} is not a column`);
    return { ...column, optional: false };
  });
  return {
    key: { type: 'struct', name: `${base}.Key`, optional: false, fields: keyFields },
    value: {
      type: 'struct',
      name: `${base}.Envelope`,
      version: 2,
      optional: false,
      fields: [
        { ...row, field: 'before' },
        { ...row, field: 'after' },
        { ...SOURCE, field: 'source' },
        TRANSACTION,
        string('op', false),
        int64('ts_ms'),
        int64('ts_us'),
        int64('ts_ns'),
      ],
    },
  };
}

/** The key and value payloads (JsonConverter form) of one change. */
export function debeziumPayloads(table: TableSpec, change: ChangeInput): { key: JsonObject; value: JsonObject } {
  const row = change.after ?? change.before;
  if (!row) throw new Error('a change needs a before or an after row');
  const key = Object.fromEntries(table.key.map((k) => [k, row[k] ?? null]));
  const tsMs = change.tsMs ?? 1_700_000_000_000;
  const source = {
    version: '3.4.3.Final',
    connector: 'postgresql',
    name: table.prefix,
    ts_ms: tsMs,
    snapshot: change.op === 'r' ? 'true' : 'false',
    db: 'shop',
    sequence: JSON.stringify([String(change.lsn - 8), String(change.lsn)]),
    ts_us: tsMs * 1000,
    ts_ns: BigInt(tsMs) * 1_000_000n,
    schema: table.schema ?? 'public',
    table: table.table,
    txId: change.txId ?? 1000,
    lsn: change.lsn,
    xmin: null,
  };
  return {
    key,
    value: {
      before: change.before ?? null,
      after: change.after ?? null,
      source,
      transaction: null,
      op: change.op,
      ts_ms: tsMs + 5,
      ts_us: (tsMs + 5) * 1000,
      ts_ns: BigInt(tsMs + 5) * 1_000_000n,
    },
  };
}
