import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { Logger } from 'pino';
import type { Config } from '../config/load.ts';
import type { SchemaRegistryConfig } from '../config/schema.ts';
import { CdcError, DecodeError, errorMessage, type RecordCoordinates } from '../errors.ts';
import type { DecodedRecord, RawRecord } from '../model/change-event.ts';
import { AbortedError } from '../retry/retrier.ts';
import { compileAvroSchema, type CompiledAvroSchema } from './avro-schema.ts';
import { createDecoder, type Decoder } from './debezium.ts';
import { coordinatesOf } from './schema-cache.ts';

/**
 * Avro records in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body),
 * as Kafka Connect's AvroConverter writes Debezium's change events, decoded with the schemas of a
 * Confluent-compatible registry.
 *
 * Why this route, one decoder for both formats: an Avro key or value is turned into exactly the
 * bytes JsonConverter would have written for the same data, `{"schema":S,"payload":P}`, and handed
 * to the JSON decoder. S is the Connect schema compiled from the Avro schema once per schema id (see
 * avro-schema.ts); P is the Avro body in JsonConverter's payload form. Everything after that, the
 * envelope checks, ops, positions, semantic types, TOAST placeholders, the column list sinks create
 * tables from, every error code, is one piece of code for both formats: they cannot drift apart,
 * and a topic may mix them (a migration from JsonConverter to AvroConverter is legal in practice).
 *
 * What it costs, per Avro record: transcoding the Avro body into the payload's JSON bytes
 * (avro-json.ts, byte to byte, no intermediate values: about 1.3 times a JSON.parse of the same
 * payload), one copy of S in front of it, and then the JSON decoder's own work, the same as for a
 * JSON record: its schema cache recognises the unchanged `{"schema":S,"payload":` by one memcmp and
 * parses only P. Measured on a PostgreSQL update envelope (12 columns: decimal, timestamps, json,
 * array, int64; 48 Avro fields with the source block, whose ts_ns is beyond 2^53), key and value,
 * on a shared 2-core VM under load: ≈ 14 µs per record as JSON, ≈ 23 µs as Avro; of the ≈ 9 µs
 * more, ≈ 6.5 µs is the transcoding. A decoder straight from Avro to events would save the
 * JSON.parse of P (a third of the total) and duplicate every rule of debezium.ts and
 * connect-schema.ts, for two formats to keep in step.
 *
 * Fetching schemas is asynchronous and decoding is not: `prepare` runs before each batch is decoded,
 * fetches (and compiles) the schema ids the batch names that are not known yet, and keeps the answer
 * per id. A registry that does not answer is retriable (the batch waits, nothing is committed); an id
 * the registry does not have, a schema that cannot be used, a body that does not read are the
 * record's own permanent failures, DecodeErrors with code AVRO_DECODE naming the record.
 */

/** The `code` of every DecodeError the Avro route adds to the JSON decoder's. */
export const AVRO_DECODE_ERROR_CODES = [
  /** Unknown schema id, a schema that cannot be used (not Avro, references, recursion), or a body that does not read. */
  'AVRO_DECODE',
  /** An Avro-framed record, and no `decode.schema_registry` configured. */
  'NO_SCHEMA_REGISTRY',
  /** The registry could not be reached and the retries gave up (`retry.deadline_ms`). */
  'SCHEMA_REGISTRY_UNAVAILABLE',
] as const;
export type AvroDecodeErrorCode = (typeof AVRO_DECODE_ERROR_CODES)[number];

export const MAGIC_BYTE = 0;
/** Magic byte and schema id. */
export const WIRE_HEADER_BYTES = 5;

/** The registry did not answer (retriable), or refused a schema id for good (code AVRO_DECODE). */
export class SchemaRegistryError extends CdcError {
  override readonly stage = 'decode';
}

/** Where schemas come from: the registry, or a fixed set in tests. */
export interface AvroSchemaSource {
  /**
   * The compiled schema registered under `id`. Rejects with SchemaRegistryError: retriable when
   * the registry could not answer, permanent (AVRO_DECODE) when it answered that it cannot be used.
   * Its message says why, after "schema id N: " (the decoder's prefix).
   */
  fetch(id: number): Promise<CompiledAvroSchema>;
}

export interface AvroDecoding {
  /** Decodes JSON records as the inner decoder does, and Avro-framed keys and values through it. */
  readonly decoder: Decoder;
  /**
   * Fetches the schemas of a batch's Avro records before it is decoded. Rejects with a retriable
   * SchemaRegistryError while the registry does not answer (the ids stay failed, so a batch decoded
   * anyway fails those records with SCHEMA_REGISTRY_UNAVAILABLE), with AbortedError when `signal`
   * fires. Undefined without a registry.
   */
  readonly prepare: ((records: readonly RawRecord[], signal: AbortSignal) => Promise<void>) | undefined;
}

/** The schema id of a Confluent-framed key or value, undefined for anything else (JSON never starts with byte 0). */
export function wireSchemaId(bytes: Buffer | null): number | undefined {
  if (bytes === null || bytes.length < WIRE_HEADER_BYTES || bytes[0] !== MAGIC_BYTE) return undefined;
  return bytes.readUInt32BE(1);
}

function isFramed(bytes: Buffer | null): bytes is Buffer {
  return bytes !== null && bytes.length > 0 && bytes[0] === MAGIC_BYTE;
}

/** Rejects with AbortedError when the signal fires first; the promise itself goes on (its answer still lands in the caches). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

interface Known {
  readonly schema: CompiledAvroSchema;
  /** `{"schema":S,"payload":` */
  readonly head: Buffer;
}

const CLOSING_BRACE = Uint8Array.of(0x7d);

class AvroDecoder implements Decoder {
  private readonly inner: Decoder;
  private readonly source: AvroSchemaSource | undefined;
  private readonly log: Logger | undefined;
  private readonly known = new Map<number, Known>();
  /** The last answer for ids that could not be fetched; replaced by the next attempt's. */
  private readonly failed = new Map<number, SchemaRegistryError>();

  constructor(inner: Decoder, source: AvroSchemaSource | undefined, log: Logger | undefined) {
    this.inner = inner;
    this.source = source;
    this.log = log;
  }

  decode(record: RawRecord): DecodedRecord {
    const { key, value } = record;
    const avroKey = isFramed(key);
    const avroValue = isFramed(value);
    if (!avroKey && !avroValue) return this.inner.decode(record);
    return this.inner.decode({
      ...record,
      key: avroKey ? this.toJson(key, 'key', record) : key,
      value: avroValue ? this.toJson(value, 'value', record) : value,
    });
  }

  /** JsonConverter's bytes for an Avro-framed key or value. */
  private toJson(bytes: Buffer, role: 'key' | 'value', at: RecordCoordinates): Buffer {
    if (bytes.length < WIRE_HEADER_BYTES) {
      throw new DecodeError(
        `${role} starts with the Confluent magic byte 0 but has ${bytes.length} byte(s), fewer than the ${WIRE_HEADER_BYTES} of the header`,
        { code: 'AVRO_DECODE', at: coordinatesOf(at) },
      );
    }
    const id = bytes.readUInt32BE(1);
    const known = this.known.get(id);
    if (!known) throw this.unknown(id, role, at);
    try {
      return known.schema.transcode(bytes, WIRE_HEADER_BYTES, known.head, CLOSING_BRACE);
    } catch (cause) {
      throw new DecodeError(`${role} is not a valid Avro body for schema id ${id}: ${errorMessage(cause)}`, {
        code: 'AVRO_DECODE',
        at: coordinatesOf(at),
        cause,
      });
    }
  }

  private unknown(id: number, role: 'key' | 'value', at: RecordCoordinates): DecodeError {
    const where = coordinatesOf(at);
    if (!this.source) {
      return new DecodeError(
        `${role} looks like the Confluent wire format (magic byte 0, schema id ${id}); configure decode.schema_registry`,
        { code: 'NO_SCHEMA_REGISTRY', at: where },
      );
    }
    const failure = this.failed.get(id);
    if (failure) {
      return new DecodeError(`${role} has schema id ${id}: ${failure.message}`, {
        code: failure.retriable ? 'SCHEMA_REGISTRY_UNAVAILABLE' : 'AVRO_DECODE',
        at: where,
        cause: failure,
      });
    }
    return new DecodeError(`${role} has schema id ${id}, not fetched from the registry before decoding`, {
      code: 'AVRO_DECODE',
      at: where,
    });
  }

  async prepare(records: readonly RawRecord[], signal: AbortSignal): Promise<void> {
    const source = this.source;
    if (!source) return;
    let missing: Set<number> | undefined;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const k = wireSchemaId(r.key);
      if (k !== undefined && !this.known.has(k)) (missing ??= new Set()).add(k);
      const v = wireSchemaId(r.value);
      if (v !== undefined && !this.known.has(v)) (missing ??= new Set()).add(v);
    }
    if (!missing) return;
    const ids = [...missing];
    const results = await abortable(Promise.allSettled(ids.map((id) => source.fetch(id))), signal);
    let retriable: SchemaRegistryError | undefined;
    results.forEach((result, i) => {
      const id = ids[i]!;
      if (result.status === 'fulfilled') {
        this.remember(id, result.value);
        return;
      }
      const error =
        result.reason instanceof SchemaRegistryError
          ? result.reason
          : new SchemaRegistryError(`fetching it failed: ${errorMessage(result.reason)}`, {
              code: 'AVRO_DECODE',
              retriable: false,
              cause: result.reason,
            });
      this.failed.set(id, error);
      if (error.retriable) retriable ??= error;
      else this.log?.warn({ schemaId: id, err: error }, 'schema id cannot be used; its records fail');
    });
    if (retriable) throw retriable;
  }

  private remember(id: number, schema: CompiledAvroSchema): void {
    if (this.known.has(id)) return;
    this.known.set(id, { schema, head: Buffer.from(`{"schema":${schema.connectJson},"payload":`, 'utf8') });
    this.failed.delete(id);
    this.log?.info({ schemaId: id, name: schema.connect.name }, 'Avro schema fetched from the registry');
  }
}

/**
 * Wraps the JSON decoder. Without a source, JSON records decode as before and Avro-framed ones fail
 * with NO_SCHEMA_REGISTRY, saying so.
 */
export function createAvroDecoding(inner: Decoder, source: AvroSchemaSource | undefined, log?: Logger): AvroDecoding {
  const decoder = new AvroDecoder(inner, source, log);
  return { decoder, prepare: source ? (records, signal) => decoder.prepare(records, signal) : undefined };
}

// --- the registry -------------------------------------------------------------------------------

type RegistryMiddleware = NonNullable<ConstructorParameters<typeof SchemaRegistry>[0]['middlewares']>[number];

function requestTimeout(ms: number): RegistryMiddleware {
  return () => ({ prepareRequest: (next) => next().then((request) => request.enhance({ timeout: ms })) });
}

function statusOf(err: unknown): number | undefined {
  const status = typeof err === 'object' && err !== null ? (err as { status?: unknown }).status : undefined;
  return typeof status === 'number' ? status : undefined;
}

/**
 * Schemas from a Confluent-compatible registry through @kafkajs/confluent-schema-registry: it
 * fetches `GET /schemas/ids/{id}`, caches by id, and runs one request per id at a time.
 *
 * The client builds an avsc type from the schema text; its avsc `typeHook` sees the parsed schema
 * first, with the connect.* attributes avsc itself drops, so the hook compiles it (Connect schema,
 * reader with exact longs) and gives the client our avsc type, which it caches under the id.
 */
export function createRegistrySchemaSource(config: SchemaRegistryConfig): AvroSchemaSource {
  const compiled = new WeakMap<object, CompiledAvroSchema>();
  const client = new SchemaRegistry(
    {
      host: config.url.replace(/\/+$/, ''),
      auth: config.username !== undefined ? { username: config.username, password: config.password ?? '' } : undefined,
      clientId: 'cdc-router',
      // The project's retrier retries, with backoff and the batch's abort signal; the client's own
      // retries would only wait inside it. (The client merges this into its module-wide defaults.)
      retry: { retries: 0 },
      middlewares: [requestTimeout(config.request_timeout_ms)],
    },
    {
      [SchemaType.AVRO]: {
        typeHook: (schema) => {
          const c = compileAvroSchema(schema);
          compiled.set(c.type, c);
          return c.type;
        },
      },
    },
  );
  // The client's messages start with its client id.
  const detail = (err: unknown) => errorMessage(err).replace(/^cdc-router - /, '');
  return {
    async fetch(id) {
      let schema: object;
      try {
        schema = await client.getSchema(id);
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) {
          throw new SchemaRegistryError(`the registry has no schema with this id (${detail(err)})`, {
            code: 'AVRO_DECODE',
            retriable: false,
            cause: err,
          });
        }
        // The hook's compile errors arrive wrapped as argument errors, as do unknown schema types.
        if (err instanceof Error && err.name === 'ConfluentSchemaRegistryArgumentError') {
          throw new SchemaRegistryError(`the schema cannot be used: ${detail(err)}`, { code: 'AVRO_DECODE', retriable: false, cause: err });
        }
        // Other HTTP answers, and connection failures and timeouts (which the client reports as
        // status 400 responses), may clear up. Anything else is a bug: not retried.
        throw new SchemaRegistryError(`schema registry ${config.url} did not answer: ${detail(err)}`, {
          code: status !== undefined ? 'SCHEMA_REGISTRY_UNAVAILABLE' : 'AVRO_DECODE',
          retriable: status !== undefined,
          cause: err,
        });
      }
      const c = compiled.get(schema);
      if (!c) {
        throw new SchemaRegistryError('it is not an Avro schema (Protobuf and JSON Schema are not decoded)', {
          code: 'AVRO_DECODE',
          retriable: false,
        });
      }
      return c;
    },
  };
}

/** The decoder the pipeline uses: Avro through the configured registry, if any, else JSON only. */
export function createSchemaRegistryDecoding(inner: Decoder, config: SchemaRegistryConfig | undefined, log?: Logger): AvroDecoding {
  return createAvroDecoding(inner, config ? createRegistrySchemaSource(config) : undefined, log);
}

/** The service's decoding, as the config says: Debezium JSON, and Avro when a registry is configured. */
export function decodingFromConfig(config: Config, log?: Logger): AvroDecoding {
  return createSchemaRegistryDecoding(
    createDecoder({
      heartbeatTopicPrefix: config.decode.heartbeat_topic_prefix,
      transactionTopicSuffix: config.decode.transaction_topic_suffix,
    }),
    config.decode.schema_registry,
    log,
  );
}
