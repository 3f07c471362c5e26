import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createDeadLetterQueue } from '../../src/dlq/create-dead-letter-queue.ts';
import { createReplayer } from '../../src/dlq/replay.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { startService } from '../../src/service.ts';
import {
  avroBodyOf,
  confluentFrame,
  debeziumPayloads,
  debeziumSchemas,
  jsonConverterText,
  type ChangeInput,
  type TableSpec,
} from '../../src/testing/avro-envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { REGISTRY_URL, testRegistry } from '../support/registry.ts';
import { PG_URL } from '../support/stores.ts';

const decimal = (scale: number, precision: number) => ({
  type: 'bytes',
  name: 'org.apache.kafka.connect.data.Decimal',
  version: 1,
  parameters: { scale: String(scale), 'connect.decimal.precision': String(precision) },
});

/** A PostgreSQL table as Debezium describes it: numeric, timestamp, timestamptz, date, jsonb, text[], bigint, double. */
function itemsTable(prefix: string): TableSpec {
  return {
    prefix,
    table: 'items',
    key: ['id'],
    columns: [
      { field: 'id', type: 'int32', optional: false },
      { field: 'name', type: 'string', optional: true },
      { field: 'price', optional: true, ...decimal(2, 10) },
      { field: 'created', type: 'int64', optional: true, name: 'io.debezium.time.MicroTimestamp', version: 1 },
      { field: 'updated', type: 'string', optional: true, name: 'io.debezium.time.ZonedTimestamp', version: 1 },
      { field: 'day', type: 'int32', optional: true, name: 'io.debezium.time.Date', version: 1 },
      { field: 'doc', type: 'string', optional: true, name: 'io.debezium.data.Json', version: 1 },
      { field: 'tags', type: 'array', optional: true, items: { type: 'string', optional: true } },
      { field: 'big', type: 'int64', optional: true },
      { field: 'score', type: 'double', optional: true },
    ],
  };
}

/** Unscaled two's-complement big-endian bytes of a decimal, base64: JsonConverter's form. */
function decimalBytes(text: string): string {
  let n = BigInt(text.replace('.', ''));
  const bytes: number[] = [];
  do {
    bytes.unshift(Number(BigInt.asUintN(8, n)));
    n >>= 8n;
  } while (!(n === 0n && (bytes[0]! & 0x80) === 0) && !(n === -1n && (bytes[0]! & 0x80) !== 0));
  return Buffer.from(bytes).toString('base64');
}

const MICROS_2024_06_15 = 1718447696123456n; // 2024-06-15T10:34:56.123456Z

function row(id: number, price: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    name: `item "${id}" é`,
    price: decimalBytes(price),
    created: MICROS_2024_06_15 + BigInt(id),
    updated: '2024-06-15T10:34:56.5+02:00',
    day: 19889, // 2024-06-15
    doc: JSON.stringify({ id, tags: ['x', 'y'], nested: { n: null } }),
    tags: ['a', null, `t${id}`],
    big: 9007199254740993n + BigInt(id), // beyond 2^53
    score: 0.1 * id,
    ...extra,
  };
}

interface Line {
  op: string;
  key: Record<string, unknown>;
  after: Record<string, unknown> | null;
  offset: string;
}

describe('Avro records through a real schema registry', () => {
  let kafka: KafkaFixture;
  let dir: string;
  let db: pg.Client;
  const dlqTopics: string[] = [];
  const pgSchemas: string[] = [];
  const registry = testRegistry();

  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-avro-'));
    db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    await db.query("SET TIME ZONE 'UTC'");
  });
  afterAll(async () => {
    await kafka.admin.deleteTopics({ topics: dlqTopics }).catch(() => undefined);
    await kafka.close();
    for (const s of pgSchemas) await db.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    await db.end();
    await registry.deleteSubjects();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes Avro changes (c/u/d, tombstones, decimals, timestamps, wide longs) exactly, beside JSON ones, dead-letters an unknown schema id, and replays a dead-lettered Avro entry', async () => {
    // Avro names allow [A-Za-z0-9_] (Debezium adjusts names to that): no dashes in the prefix.
    const prefix = uniqueName('avro').replace(/-/g, '_');
    const topic = `${prefix}.public.items`;
    const dlqTopic = `${prefix}.dlq`;
    const pgSchema = prefix.toLowerCase();
    dlqTopics.push(dlqTopic);
    pgSchemas.push(pgSchema);
    await kafka.createTopic(topic, 1);

    const table = itemsTable(prefix);
    const schemas = debeziumSchemas(table);
    const keyId = await registry.register(`${topic}-key`, schemas.key);
    const valueId = await registry.register(`${topic}-value`, schemas.value);
    expect(keyId).not.toBe(valueId);

    let lsn = 5000;
    const avro = (change: Omit<ChangeInput, 'lsn'>) => {
      const p = debeziumPayloads(table, { ...change, lsn: (lsn += 16) });
      return { key: confluentFrame(keyId, avroBodyOf(schemas.key, p.key)), value: confluentFrame(valueId, avroBodyOf(schemas.value, p.value)) };
    };
    const json = (change: Omit<ChangeInput, 'lsn'>) => {
      const p = debeziumPayloads(table, { ...change, lsn: (lsn += 16) });
      return { key: jsonConverterText(schemas.key, p.key), value: jsonConverterText(schemas.value, p.value) };
    };
    // In source order: each change's LSN is past the one before (sinks refuse older writes).
    const messages: { key: Buffer | string; value: Buffer | string | null }[] = [];
    messages.push(avro({ op: 'c', after: row(1, '12.34') })); // 0
    messages.push(avro({ op: 'c', after: row(2, '-0.50') })); // 1
    messages.push(avro({ op: 'r', after: row(3, '0.03') })); // 2
    messages.push(avro({ op: 'u', before: row(2, '-0.50'), after: row(2, '99999999.99', { name: null, doc: null, tags: [] }) })); // 3
    const deleted = avro({ op: 'd', before: row(3, '0.03') });
    messages.push(deleted, { key: deleted.key, value: null }); // 4, and 5: its tombstone
    messages.push(json({ op: 'c', after: row(4, '4.00') })); // 6: JsonConverter on the same topic
    const unknownId = avro({ op: 'c', after: row(9, '9.99') });
    unknownId.value.writeUInt32BE(2_000_000_000, 1);
    messages.push(unknownId); // 7: a schema id the registry does not have
    messages.push(avro({ op: 'u', before: row(1, '12.34'), after: row(1, '12.35') })); // 8
    await kafka.producer.send({ topic, messages });

    // A table with no route (unrouted: fail): its Avro change is dead-lettered, to be replayed below.
    const otherTopic = `${prefix}.public.other`;
    await kafka.createTopic(otherTopic, 1);
    const other: TableSpec = { ...table, table: 'other' };
    const otherSchemas = debeziumSchemas(other);
    const otherKeyId = await registry.register(`${otherTopic}-key`, otherSchemas.key);
    const otherValueId = await registry.register(`${otherTopic}-value`, otherSchemas.value);
    const otherPayloads = debeziumPayloads(other, { op: 'c', after: row(7, '7.77'), lsn: (lsn += 16) });
    const unroutedAvro = {
      key: confluentFrame(otherKeyId, avroBodyOf(otherSchemas.key, otherPayloads.key)),
      value: confluentFrame(otherValueId, avroBodyOf(otherSchemas.value, otherPayloads.value)),
    };
    await kafka.producer.send({ topic: otherTopic, messages: [unroutedAvro] });

    const out = join(dir, `${prefix}.jsonl`);
    const group = uniqueName('avro-group');
    const rawConfig = {
      kafka: { brokers: [BROKER], group_id: group, topics: [topic, otherTopic] },
      decode: { schema_registry: { url: REGISTRY_URL } },
      sinks: {
        file: { kind: 'file', path: out, fsync: false },
        pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
      },
      routes: [{ table: 'public.items', sinks: ['file', 'pg'] }],
      unrouted: 'fail',
      retry: { initial_ms: 50, max_ms: 500 },
      dlq: { kind: 'kafka', topic: dlqTopic },
      metrics: { enabled: false },
    };
    const config = await resolveConfig(rawConfig);
    const events = new RouterEvents();
    const lettered: { offset: string; stage: string; code: string }[] = [];
    events.on('record.dead-lettered', (e) => lettered.push({ offset: e.offset, stage: e.stage, code: e.error.code }));
    const halted: string[] = [];
    events.on('partition.halted', (h) => halted.push(`${h.offset}: ${h.error.message}`));
    const service = await startService(config, { logger: createLogger({ level: 'error' }), events });
    try {
      await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === BigInt(messages.length), 90_000, 'commit to the end');
      await waitUntil(async () => (await kafka.committed(group, otherTopic)).get(0) === 1n, 30_000, 'commit past the unrouted change');
    } finally {
      await service.stop();
    }
    expect(halted).toEqual([]);
    expect(lettered.sort((a, b) => a.stage.localeCompare(b.stage))).toEqual([
      { offset: '7', stage: 'decode', code: 'AVRO_DECODE' },
      { offset: '0', stage: 'route', code: 'UNROUTED' },
    ]);

    // PostgreSQL: the exact values, in the column types the sink created from the Avro schema.
    const columns = await db.query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'items' AND column_name NOT LIKE '\\_\\_%' ORDER BY ordinal_position`,
      [pgSchema],
    );
    expect(Object.fromEntries(columns.rows.map((c) => [c.column_name, c.data_type]))).toEqual({
      id: 'integer',
      name: 'text',
      price: 'numeric',
      created: 'timestamp without time zone',
      updated: 'timestamp with time zone',
      day: 'date',
      doc: 'jsonb',
      tags: 'ARRAY',
      big: 'bigint',
      score: 'double precision',
    });
    const rows = await db.query(
      `SELECT id, name, price::text AS price, created::text AS created, updated::text AS updated, day::text AS day, doc, tags, big::text AS big, score
       FROM "${pgSchema}".items ORDER BY id`,
    );
    expect(rows.rows).toEqual([
      {
        id: 1,
        name: 'item "1" é',
        price: '12.35',
        created: '2024-06-15 10:34:56.123457',
        updated: '2024-06-15 08:34:56.5+00',
        day: '2024-06-15',
        doc: { id: 1, tags: ['x', 'y'], nested: { n: null } },
        tags: ['a', null, 't1'],
        big: '9007199254740994',
        score: 0.1,
      },
      { id: 2, name: null, price: '99999999.99', created: '2024-06-15 10:34:56.123458', updated: '2024-06-15 08:34:56.5+00', day: '2024-06-15', doc: null, tags: [], big: '9007199254740995', score: 0.2 },
      {
        id: 4,
        name: 'item "4" é',
        price: '4.00',
        created: '2024-06-15 10:34:56.12346',
        updated: '2024-06-15 08:34:56.5+00',
        day: '2024-06-15',
        doc: { id: 4, tags: ['x', 'y'], nested: { n: null } },
        tags: ['a', null, 't4'],
        big: '9007199254740997',
        score: 0.4,
      },
    ]);

    // The file sink: every change in order; the values the decoder made of them.
    const lines = (await readFile(out, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line);
    expect(lines.map((l) => [l.offset, l.op, l.key['id']])).toEqual([
      ['0', 'c', 1],
      ['1', 'c', 2],
      ['2', 'r', 3],
      ['3', 'u', 2],
      ['4', 'd', 3],
      ['6', 'c', 4],
      ['8', 'u', 1],
    ]);
    expect(lines[0]!.after).toEqual({
      id: 1,
      name: 'item "1" é',
      price: '12.34',
      created: '2024-06-15T10:34:56.123457',
      updated: '2024-06-15T10:34:56.5+02:00',
      day: '2024-06-15',
      doc: { id: 1, tags: ['x', 'y'], nested: { n: null } },
      tags: ['a', null, 't1'],
      big: '9007199254740994',
      score: 0.1,
    });
    expect(lines[3]!.after).toMatchObject({ price: '99999999.99', name: null, doc: null, tags: [] });
    // The JSON record decodes to the same values as its Avro siblings.
    expect(lines[5]!.after).toEqual({ ...lines[0]!.after, id: 4, name: 'item "4" é', price: '4.00', created: '2024-06-15T10:34:56.123460', tags: ['a', null, 't4'], big: '9007199254740997', score: 0.4, doc: { id: 4, tags: ['x', 'y'], nested: { n: null } } });

    // The dead-letter entry: the original bytes, the decode stage and the reason.
    const dlq = createDeadLetterQueue(config, createLogger({ level: 'warn' }))!;
    await dlq.start();
    try {
      const entries = await dlq.list();
      expect(entries).toHaveLength(2);
      const entry = entries.find((e) => e.context.topic === topic)!;
      expect(entry.context).toMatchObject({ topic, partition: 0, offset: '7', stage: 'decode', errorClass: 'DecodeError', errorCode: 'AVRO_DECODE' });
      expect(entry.context.errorMessage).toContain(`${topic}/0@7: value has schema id 2000000000: the registry has no schema with this id`);
      expect(entry.value?.equals(unknownId.value)).toBe(true);
      expect(entry.key?.equals(unknownId.key)).toBe(true);

      // The unrouted Avro entry, replayed once a route exists: decoded through the registry, as the service would.
      const unrouted = entries.find((e) => e.context.topic === otherTopic)!;
      expect(unrouted.context).toMatchObject({ stage: 'route', errorCode: 'UNROUTED' });
      const fixed = await resolveConfig({ ...rawConfig, routes: [...rawConfig.routes, { table: 'public.other', sinks: ['file'] }] });
      const replayer = createReplayer(fixed, { dlq, logger: createLogger({ level: 'warn' }) });
      try {
        expect(await replayer.replay(unrouted)).toMatchObject({ outcome: 'replayed', table: 'public.other', op: 'c', sinks: ['file'] });
      } finally {
        await replayer.close();
      }
      const replayed = (await readFile(out, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Line)
        .at(-1)!;
      expect([replayed.op, replayed.key['id'], replayed.after?.['price']]).toEqual(['c', 7, '7.77']);
    } finally {
      await dlq.close();
    }
  });

  it('waits, committing nothing, while the registry cannot be reached, and goes on once it can', async () => {
    const prefix = uniqueName('avro_down').replace(/-/g, '_');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 1);
    const table = itemsTable(prefix);
    const schemas = debeziumSchemas(table);
    const keyId = await registry.register(`${topic}-key`, schemas.key);
    const valueId = await registry.register(`${topic}-value`, schemas.value);
    const messages = [1, 2].map((id) => {
      const p = debeziumPayloads(table, { op: 'c', after: row(id, '1.00'), lsn: 100 + id * 8 });
      return { key: confluentFrame(keyId, avroBodyOf(schemas.key, p.key)), value: confluentFrame(valueId, avroBodyOf(schemas.value, p.value)) };
    });
    await kafka.producer.send({ topic, messages });

    const out = join(dir, `${prefix}.jsonl`);
    const group = uniqueName('avro-down-group');
    const document = (url: string) => ({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      decode: { schema_registry: { url, request_timeout_ms: 2_000 } },
      sinks: { file: { kind: 'file', path: out, fsync: false } },
      routes: [{ table: 'public.items', sinks: ['file'] }],
      retry: { initial_ms: 50, max_ms: 200 },
      metrics: { enabled: false },
    });
    const logs: { msg?: string; err?: { message?: string } }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) });

    // Nothing listens on port 1: connection refused, a retriable failure.
    const down = await startService(await resolveConfig(document('http://127.0.0.1:1/apis/ccompat/v7')), { logger });
    try {
      await waitUntil(() => logs.filter((l) => l.msg === 'batch preparation failed, retrying').length >= 3, 60_000, 'registry retries');
      expect(logs.find((l) => l.msg === 'batch preparation failed, retrying')?.err?.message).toMatch(/did not answer: .*ECONNREFUSED/);
      expect((await kafka.committed(group, topic)).get(0) ?? -1n).toBe(-1n);
    } finally {
      // Shutdown drains for 10 s, then its abort ends the wait for the registry, committing nothing.
      const t0 = Date.now();
      await down.stop();
      expect(Date.now() - t0).toBeLessThan(25_000);
    }
    expect((await kafka.committed(group, topic)).get(0) ?? -1n).toBe(-1n);
    expect(await readFile(out, 'utf8').catch(() => '')).toBe('');

    const up = await startService(await resolveConfig(document(REGISTRY_URL)), { logger });
    try {
      await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === 2n, 60_000, 'commit to the end');
    } finally {
      await up.stop();
    }
    const lines = (await readFile(out, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
    expect(lines.map((l) => [l.offset, l.op, l.after?.['price']])).toEqual([
      ['0', 'c', '1.00'],
      ['1', 'c', '1.00'],
    ]);
  });
});
