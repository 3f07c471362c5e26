import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import {
  SchemaRegistryError,
  createAvroDecoding,
  type AvroDecoding,
  type AvroSchemaSource,
} from '../../src/decode/avro.ts';
import { compileAvroSchema, type CompiledAvroSchema } from '../../src/decode/avro-schema.ts';
import { createDecoder } from '../../src/decode/debezium.ts';
import { ConfigError, DecodeError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import type { DecodedRecord, RawRecord } from '../../src/model/change-event.ts';
import { createBatchProcessor } from '../../src/pipeline/batch-processor.ts';
import type { RecordFailure } from '../../src/pipeline/contracts.ts';
import { AbortedError } from '../../src/retry/retrier.ts';
import { createRouter } from '../../src/route/router.ts';
import { OK, type Sink } from '../../src/sink/sink.ts';
import {
  avroBodyOf,
  avroSchemaOf,
  confluentFrame,
  debeziumPayloads,
  debeziumSchemas,
  jsonConverterText,
  type ConnectInput,
  type TableSpec,
} from '../../src/testing/avro-envelope.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const logger = createLogger({ level: 'silent' });

/**
 * JSON.parse, with integers beyond 2^53 as bigints: the Avro side of a fixture must carry the exact
 * values its JSON text has.
 */
function parseLossless(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i]!;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j]!)) j++;
      const token = text.slice(i, j);
      out += /^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token)) ? `"\\u0000${token}"` : token;
      i = j - 1;
    } else {
      out += c;
    }
  }
  return JSON.parse(out, (_k, v: unknown) => (typeof v === 'string' && v.startsWith('\u0000') ? BigInt(v.slice(1)) : v));
}

interface Framed {
  readonly schema: ConnectInput | null;
  readonly payload: unknown;
}

/** Schemas get ids in the order they are first seen; the fake registry serves them. */
class FakeRegistry implements AvroSchemaSource {
  readonly schemas = new Map<number, CompiledAvroSchema>();
  private readonly ids = new Map<string, number>();
  fetches: number[] = [];
  failure: ((id: number) => Error | undefined) | undefined;

  idOf(schema: ConnectInput): number {
    const key = JSON.stringify(schema);
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.ids.size + 100;
      this.ids.set(key, id);
      this.schemas.set(id, compileAvroSchema(avroSchemaOf(schema)));
    }
    return id;
  }

  avro(framed: Framed | null): Buffer | null {
    if (framed === null) return null;
    if (!framed.schema) throw new Error('Avro needs a schema');
    return confluentFrame(this.idOf(framed.schema), avroBodyOf(framed.schema, framed.payload));
  }

  async fetch(id: number): Promise<CompiledAvroSchema> {
    this.fetches.push(id);
    const failure = this.failure?.(id);
    if (failure) throw failure;
    const schema = this.schemas.get(id);
    if (!schema) throw new SchemaRegistryError('the registry has no schema with this id (HTTP 404)', { code: 'AVRO_DECODE', retriable: false });
    return schema;
  }
}

function raw(topic: string, offset: number, key: Buffer | string | null, value: Buffer | string | null): RawRecord {
  const bytes = (v: Buffer | string | null) => (typeof v === 'string' ? Buffer.from(v) : v);
  return { topic, partition: 2, offset: String(offset), timestamp: 1730000000999, key: bytes(key), value: bytes(value), headers: {} };
}

/**
 * Integers beyond 2^53 that no converter touches (the source block's ts_ns…) arrive rounded from
 * JSON and as exact digits from Avro: both compared as the nearest double.
 */
function comparable(d: DecodedRecord): unknown {
  return JSON.parse(
    JSON.stringify(d, (_k, v: unknown) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (typeof v === 'symbol') return String(v);
      if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) return `≈${v}`;
      if (typeof v === 'string' && /^-?\d{16,}$/.test(v)) return `≈${Number(v)}`;
      return v;
    }),
  );
}

function outcome(decoding: { decode(r: RawRecord): DecodedRecord }, r: RawRecord): unknown {
  try {
    return comparable(decoding.decode(r));
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return { error: e.code, message: e.message };
  }
}

async function prepared(registry: FakeRegistry, records: RawRecord[]): Promise<AvroDecoding> {
  const decoding = createAvroDecoding(createDecoder(), registry);
  await decoding.prepare!(records, new AbortController().signal);
  return decoding;
}

const fixture = (path: string) => readFileSync(FIXTURES + path, 'utf8');

/** Value fixture, key fixture (or null), topic. */
const PAIRS: [string, string | null, string][] = [
  ['debezium/postgres/all-types.json', 'debezium/postgres/all-types-key.json', 'dbserver1.public.all_types'],
  ['debezium/postgres/customers-insert.json', 'debezium/postgres/customers-key-1005.json', 'dbserver1.inventory.customers'],
  ['debezium/postgres/customers-update.json', 'debezium/postgres/customers-key-1005.json', 'dbserver1.inventory.customers'],
  ['debezium/postgres/customers-delete.json', 'debezium/postgres/customers-key-1005.json', 'dbserver1.inventory.customers'],
  ['debezium/postgres/customers-snapshot.json', 'debezium/postgres/customers-key-1005.json', 'dbserver1.inventory.customers'],
  ['debezium/postgres/customers-truncate.json', null, 'dbserver1.inventory.customers'],
  ['debezium/postgres/customers-insert.json', null, 'dbserver1.inventory.customers'],
  ['debezium/postgres/documents-update-toast.json', 'debezium/postgres/documents-key-42.json', 'dbserver1.inventory.documents'],
  ['debezium/mysql/products-insert.json', 'debezium/mysql/products-key-101.json', 'dbserver1.inventory.products'],
  ['debezium/mysql/products-update.json', 'debezium/mysql/products-key-101.json', 'dbserver1.inventory.products'],
  ['debezium/mysql/products-delete.json', 'debezium/mysql/products-key-101.json', 'dbserver1.inventory.products'],
  ['debezium/mysql/products-snapshot.json', 'debezium/mysql/products-key-101.json', 'dbserver1.inventory.products'],
  ['debezium/mysql/events-connect-types.json', 'debezium/mysql/events-connect-key.json', 'dbserver2.shop.events'],
  ['debezium/misc/heartbeat.json', 'debezium/misc/heartbeat-key.json', '__debezium-heartbeat.dbserver1'],
  ['debezium/misc/transaction-begin.json', 'debezium/misc/transaction-key.json', 'dbserver1.transaction'],
  ['debezium/misc/transaction-end.json', 'debezium/misc/transaction-key.json', 'dbserver1.transaction'],
  ['debezium/misc/oracle-nanos.json', 'debezium/misc/oracle-nanos-key.json', 'server1.INVENTORY.SENSOR_READINGS'],
  ['debezium/misc/sqlserver-nested.json', 'debezium/misc/sqlserver-nested-key.json', 'sqlsrv.shop.dbo.orders'],
];

describe('Avro through the JSON decoder', () => {
  it('decodes every fixture exactly as its JSON form, keys and tombstones included', async () => {
    const registry = new FakeRegistry();
    const json: RawRecord[] = [];
    const avro: RawRecord[] = [];
    PAIRS.forEach(([valuePath, keyPath, topic], i) => {
      const valueText = fixture(valuePath);
      const keyText = keyPath ? fixture(keyPath) : null;
      json.push(raw(topic, i, keyText, valueText));
      avro.push(raw(topic, i, keyText && registry.avro(parseLossless(keyText) as Framed), registry.avro(parseLossless(valueText) as Framed)));
    });
    // Real Debezium 3.x records (JsonConverter with schemas), tombstones among them.
    for (const file of ['default-identity-update-delete', 'heartbeat', 'snapshot-read', 'transaction']) {
      const records = parseLossless(fixture(`debezium-real/${file}.json`)) as { topic: string; offset: number; key: Framed | null; value: Framed | null }[];
      for (const r of records) {
        const text = (f: Framed | null) => (f === null ? null : jsonConverterText(f.schema, f.payload));
        json.push(raw(r.topic, r.offset, text(r.key), text(r.value)));
        avro.push(raw(r.topic, r.offset, registry.avro(r.key), registry.avro(r.value)));
      }
    }
    const decoding = await prepared(registry, avro);
    const plain = createDecoder();
    let changes = 0;
    json.forEach((record, i) => {
      const expected = outcome(plain, record);
      expect(outcome(decoding.decoder, avro[i]!), `${record.topic}@${record.offset}`).toEqual(expected);
      if ((expected as { kind?: string }).kind === 'change') changes++;
    });
    expect(changes).toBeGreaterThan(15);
    // The exact digits, where JSON.parse rounded them (1730000000123000064).
    const insert = decoding.decoder.decode(avro[1]!);
    expect(insert.kind === 'change' && insert.source.raw['ts_ns']).toBe('1730000000123000000');
    // A key-less insert fails the same way in both formats.
    expect(outcome(decoding.decoder, avro[6]!)).toMatchObject({ error: 'MISSING_KEY' });
  });

  it('keeps longs beyond 2^53 exact where JSON numbers would round', async () => {
    const registry = new FakeRegistry();
    const table: TableSpec = {
      prefix: 'wide',
      table: 't',
      key: ['id'],
      columns: [
        { field: 'id', type: 'int64', optional: false },
        { field: 'ns', type: 'int64', optional: true, name: 'io.debezium.time.NanoTimestamp', version: 1 },
      ],
    };
    const schemas = debeziumSchemas(table);
    const payloads = debeziumPayloads(table, { op: 'c', after: { id: 2n ** 63n - 1n, ns: 1730000500123456789n }, lsn: 100 });
    const record = raw('wide.public.t', 0, registry.avro({ schema: schemas.key, payload: payloads.key }), registry.avro({ schema: schemas.value, payload: payloads.value }));
    const decoded = (await prepared(registry, [record])).decoder.decode(record);
    expect(decoded).toMatchObject({ kind: 'change', key: { id: 9223372036854775807n }, after: { id: 9223372036854775807n, ns: '2024-10-27T03:41:40.123456789' } });
  });

  it('decodes JSON and Avro records of one topic side by side', async () => {
    const registry = new FakeRegistry();
    const valueText = fixture('debezium/postgres/customers-update.json');
    const keyText = fixture('debezium/postgres/customers-key-1005.json');
    const avroValue = registry.avro(parseLossless(valueText) as Framed);
    const avroKey = registry.avro(parseLossless(keyText) as Framed);
    const records = [
      raw('t', 0, keyText, valueText),
      raw('t', 1, avroKey, avroValue),
      raw('t', 2, keyText, avroValue),
      raw('t', 3, avroKey, valueText),
      raw('t', 4, avroKey, null),
    ];
    const decoding = await prepared(registry, records);
    const results = records.map((r) => comparable(decoding.decoder.decode(r)) as { kind: string; after?: unknown; kafka: unknown });
    for (const r of results.slice(1, 4)) expect({ ...r, kafka: undefined }).toEqual({ ...results[0]!, kafka: undefined });
    expect(results[4]).toMatchObject({ kind: 'tombstone', key: { id: 1005 } });
    expect(registry.fetches.sort()).toEqual([100, 101]);
  });

  it('without a registry, says what an Avro-framed record looks like and what to configure', () => {
    const decoding = createAvroDecoding(createDecoder(), undefined);
    expect(decoding.prepare).toBeUndefined();
    const record = raw('shop.public.orders', 17, null, Buffer.from([0, 0, 0, 0, 42, 2, 4]));
    expect(() => decoding.decoder.decode(record)).toThrow(DecodeError);
    expect(outcome(decoding.decoder, record)).toEqual({
      error: 'NO_SCHEMA_REGISTRY',
      message: 'shop.public.orders/2@17: value looks like the Confluent wire format (magic byte 0, schema id 42); configure decode.schema_registry',
    });
    // JSON is untouched.
    const json = raw('dbserver1.inventory.customers', 1, fixture('debezium/postgres/customers-key-1005.json'), fixture('debezium/postgres/customers-insert.json'));
    expect(decoding.decoder.decode(json)).toEqual(createDecoder().decode(json));
  });

  it('fails a record of an unknown schema id, a corrupt body or a short header with AVRO_DECODE, naming the record', async () => {
    const registry = new FakeRegistry();
    const keyText = fixture('debezium/postgres/customers-key-1005.json');
    const good = registry.avro(parseLossless(fixture('debezium/postgres/customers-insert.json')) as Framed)!;
    const unknown = Buffer.from(good);
    unknown.writeUInt32BE(999, 1);
    const corrupt = Buffer.concat([good.subarray(0, 40), Buffer.from([0xff, 0xff])]);
    const records = [raw('t', 5, keyText, unknown), raw('t', 6, keyText, corrupt), raw('t', 7, Buffer.from([0, 0, 1]), good), raw('t', 8, keyText, good)];
    const decoding = await prepared(registry, records);
    expect(outcome(decoding.decoder, records[0]!)).toEqual({
      error: 'AVRO_DECODE',
      message: 't/2@5: value has schema id 999: the registry has no schema with this id (HTTP 404)',
    });
    expect(outcome(decoding.decoder, records[1]!)).toMatchObject({ error: 'AVRO_DECODE', message: expect.stringMatching(/^t\/2@6: value is not a valid Avro body for schema id 100: /) });
    expect(outcome(decoding.decoder, records[2]!)).toMatchObject({
      error: 'AVRO_DECODE',
      message: 't/2@7: key starts with the Confluent magic byte 0 but has 3 byte(s), fewer than the 5 of the header',
    });
    expect(outcome(decoding.decoder, records[3]!)).toMatchObject({ kind: 'change', op: 'c' });
  });

  it('fetches each schema id once, asks again for ids that failed, and gives up waiting when aborted', async () => {
    const registry = new FakeRegistry();
    const value = registry.avro(parseLossless(fixture('debezium/postgres/customers-insert.json')) as Framed)!;
    const key = registry.avro(parseLossless(fixture('debezium/postgres/customers-key-1005.json')) as Framed)!;
    const records = [raw('t', 0, key, value), raw('t', 1, key, value)];
    const decoding = createAvroDecoding(createDecoder(), registry);
    const signal = new AbortController().signal;

    registry.failure = () => new SchemaRegistryError('schema registry http://r: connect ECONNREFUSED', { code: 'SCHEMA_REGISTRY_UNAVAILABLE', retriable: true });
    await expect(decoding.prepare!(records, signal)).rejects.toMatchObject({ retriable: true });
    // Decoded anyway (the retries gave up): each record fails, saying why.
    expect(outcome(decoding.decoder, records[0]!)).toMatchObject({ error: 'SCHEMA_REGISTRY_UNAVAILABLE', message: expect.stringContaining('ECONNREFUSED') });

    registry.failure = undefined;
    registry.fetches = [];
    await decoding.prepare!(records, signal);
    expect(registry.fetches.sort()).toEqual([100, 101]);
    await decoding.prepare!(records, signal);
    expect(registry.fetches).toHaveLength(2);
    expect(decoding.decoder.decode(records[1]!)).toMatchObject({ kind: 'change' });

    // A registry that never answers: the abort ends the wait.
    const hanging = new FakeRegistry();
    hanging.fetch = () => new Promise(() => undefined);
    const waiting = createAvroDecoding(createDecoder(), hanging);
    const controller = new AbortController();
    const pending = waiting.prepare!([raw('t', 0, null, Buffer.from([0, 0, 0, 0, 7]))], controller.signal);
    controller.abort('rebalance');
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
  });
});

describe('the batch processor with a preparation step', () => {
  const table: TableSpec = {
    prefix: 'bp',
    table: 'items',
    key: ['id'],
    columns: [
      { field: 'id', type: 'int32', optional: false },
      { field: 'price', type: 'bytes', optional: true, name: 'org.apache.kafka.connect.data.Decimal', version: 1, parameters: { scale: '2' } },
    ],
  };

  function setup(registry: FakeRegistry, policy = { initialMs: 5, maxMs: 20, factor: 2, jitter: 0 }) {
    const written: unknown[] = [];
    const failures: RecordFailure[] = [];
    const sink: Sink = {
      name: 'mem',
      kind: 'memory',
      start: async () => undefined,
      write: async (batch) => {
        written.push(...batch.map((e) => e.after));
        return batch.map(() => OK);
      },
      close: async () => undefined,
    };
    const decoding = createAvroDecoding(createDecoder(), registry);
    const processor = createBatchProcessor({
      decoder: decoding.decoder,
      prepare: decoding.prepare,
      router: createRouter([{ table: 'public.items', transforms: [], sinks: ['mem'] }], new Map([['mem', sink]])),
      unrouted: 'skip',
      maxBatchSize: 100,
      retryPolicy: policy,
      events: new RouterEvents(),
      logger,
      onFailure: async (f) => {
        failures.push(f);
        return true;
      },
    });
    return { processor, written, failures };
  }

  /** Processes a batch; `committed` is the last commit point, reported during the batch or at its end. */
  async function run(processor: ReturnType<typeof setup>['processor'], batch: RawRecord[]) {
    let committed: bigint | undefined;
    const outcome = await processor.process(batch, { signal: new AbortController().signal, progress: (o) => (committed = o) });
    return { committed: outcome.commitOffset ?? committed, halted: outcome.halted, aborted: outcome.aborted };
  }

  function records(registry: FakeRegistry): RawRecord[] {
    const schemas = debeziumSchemas(table);
    return [1, 2, 3].map((id) => {
      const p = debeziumPayloads(table, { op: 'c', after: { id, price: Buffer.from([id]).toString('base64') }, lsn: 100 + id });
      return raw('bp.public.items', id, registry.avro({ schema: schemas.key, payload: p.key }), registry.avro({ schema: schemas.value, payload: p.value }));
    });
  }

  it('waits for the registry, committing nothing, then writes the batch', async () => {
    const registry = new FakeRegistry();
    const batch = records(registry);
    let down = 3;
    registry.failure = () => (down-- > 0 ? new SchemaRegistryError('registry down', { code: 'SCHEMA_REGISTRY_UNAVAILABLE', retriable: true }) : undefined);
    const { processor, written, failures } = setup(registry);
    const outcome = await run(processor, batch);
    expect(outcome).toEqual({ committed: 4n, halted: undefined, aborted: false });
    expect(written).toEqual([{ id: 1, price: '0.01' }, { id: 2, price: '0.02' }, { id: 3, price: '0.03' }]);
    expect(failures).toEqual([]);
    expect(registry.fetches.length).toBeGreaterThan(2);
  });

  it('commits nothing when aborted while the registry is away', async () => {
    const registry = new FakeRegistry();
    const batch = records(registry);
    registry.failure = () => new SchemaRegistryError('registry down', { code: 'SCHEMA_REGISTRY_UNAVAILABLE', retriable: true });
    const { processor, written } = setup(registry);
    const controller = new AbortController();
    const progress: bigint[] = [];
    const pending = processor.process(batch, { signal: controller.signal, progress: (o) => progress.push(o) });
    await new Promise((r) => setTimeout(r, 30));
    controller.abort('shutdown');
    expect(await pending).toEqual({ commitOffset: undefined, halted: undefined, aborted: true });
    expect(written).toEqual([]);
    expect(progress).toEqual([]);
  });

  it('sends a record of an unknown schema id to the failure handler (the DLQ) with AVRO_DECODE, and the rest on', async () => {
    const registry = new FakeRegistry();
    const batch = records(registry);
    const bad = Buffer.from(batch[1]!.value!);
    bad.writeUInt32BE(4242, 1);
    batch[1] = { ...batch[1]!, value: bad };
    const { processor, written, failures } = setup(registry);
    expect(await run(processor, batch)).toMatchObject({ committed: 4n, halted: undefined });
    expect(written).toEqual([{ id: 1, price: '0.01' }, { id: 3, price: '0.03' }]);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.record).toBe(batch[1]);
    expect(failures[0]!.record.value).toBe(bad);
    expect(failures[0]!.error).toMatchObject({ stage: 'decode', code: 'AVRO_DECODE', message: expect.stringContaining('bp.public.items/2@2: value has schema id 4242') });
  });

  it('fails the records it could not prepare once the retry deadline passed', async () => {
    const registry = new FakeRegistry();
    const batch = records(registry);
    registry.failure = () => new SchemaRegistryError('registry down', { code: 'SCHEMA_REGISTRY_UNAVAILABLE', retriable: true });
    const { processor, failures } = setup(registry, { initialMs: 5, maxMs: 10, factor: 2, jitter: 0, deadlineMs: 30 } as never);
    expect(await run(processor, batch)).toMatchObject({ committed: 4n, halted: undefined });
    expect(failures.map((f) => f.error.code)).toEqual(['SCHEMA_REGISTRY_UNAVAILABLE', 'SCHEMA_REGISTRY_UNAVAILABLE', 'SCHEMA_REGISTRY_UNAVAILABLE']);
  });
});

describe('decode.schema_registry', () => {
  const base = { kafka: { brokers: ['127.0.0.1:9092'], topics: ['t'] }, sinks: {}, routes: [] };

  it('is optional, with a default timeout', async () => {
    expect((await resolveConfig(base)).decode.schema_registry).toBeUndefined();
    const config = await resolveConfig(
      { ...base, decode: { schema_registry: { url: 'http://127.0.0.1:8081/apis/ccompat/v7', username: 'u', password: '${REG_PASSWORD}' } } },
      { env: { REG_PASSWORD: 'secret' } },
    );
    expect(config.decode.schema_registry).toEqual({ url: 'http://127.0.0.1:8081/apis/ccompat/v7', username: 'u', password: 'secret', request_timeout_ms: 10_000 });
  });

  it('refuses credentials in the url, a password without a user and unknown options', async () => {
    const bad = resolveConfig({ ...base, decode: { schema_registry: { url: 'http://u:p@registry:8081', password: 'x', timeout: 5 } } });
    await expect(bad).rejects.toBeInstanceOf(ConfigError);
    const issues = await bad.catch((e: ConfigError) => e.issues.map((i) => i.path).sort());
    expect(issues).toEqual(['decode.schema_registry', 'decode.schema_registry.url', 'decode.schema_registry.username']);
  });
});
