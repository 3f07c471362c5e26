import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDlqDiscard, runDlqList, runDlqReplay, runDlqShow, type DlqIo } from '../../src/cli/dlq-command.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { createDeadLetterQueue } from '../../src/dlq/create-dead-letter-queue.ts';
import type { DeadLetter, DeadLetterQueue } from '../../src/dlq/dead-letter-queue.ts';
import { CDC_HEADERS, CONNECT_HEADERS } from '../../src/dlq/kafka-headers.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { startService } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { cli } from '../support/router-process.ts';
import { BROKER, kafkaFixture, testKafka, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { readJsonLines } from '../support/json-lines.ts';

const REDIS_PORT = 6379;
const logger = createLogger({ level: 'error' });

const bytes = (...b: number[]) => Buffer.from(b);

/** Three letters: binary (non-UTF-8) key, value and header bytes, a null value, an empty key. */
function letters(): DeadLetter[] {
  const ctx = {
    topic: 'shop.public.items',
    partition: 1,
    timestamp: 1_700_000_000_000,
    errorStack: 'Error: x\n    at here',
    attempts: 1,
    firstFailureAt: 1_700_000_001_000,
  };
  return [
    {
      key: bytes(0xff, 0x00, 0x01),
      value: bytes(0xc3, 0x28, 0xa0, 0xa1),
      headers: { 'h-bin': bytes(0x80, 0x81), 'h-text': Buffer.from('x'), [CONNECT_HEADERS.topic]: Buffer.from('upstream') },
      context: {
        ...ctx,
        offset: '10',
        stage: 'decode',
        sink: undefined,
        table: undefined,
        errorClass: 'DecodeError',
        errorCode: 'MALFORMED_JSON',
        errorMessage: 'shop.public.items/1@10: value is not valid JSON',
        lastFailureAt: 1_700_000_001_000,
      },
    },
    {
      key: Buffer.alloc(0),
      value: null,
      headers: {},
      context: {
        ...ctx,
        offset: '11',
        stage: 'transform',
        sink: undefined,
        table: 'public.a',
        errorClass: 'TransformError',
        errorCode: 'TRANSFORM_FAILED',
        errorMessage: 'transform public.a#0: boom',
        lastFailureAt: 1_700_000_002_000,
      },
    },
    {
      key: Buffer.from('{"id":3}'),
      value: Buffer.from('{"op":"c"}'),
      headers: {},
      context: {
        ...ctx,
        offset: '12',
        stage: 'sink',
        sink: 'pg',
        table: 'public.b',
        errorClass: 'SinkError',
        errorCode: '23514',
        errorMessage: 'sink pg: check violation',
        attempts: 4,
        lastFailureAt: 1_700_000_003_000,
      },
    },
  ];
}

function sameBytes(a: Buffer | null | undefined, b: Buffer | null | undefined): boolean {
  if (a === null || b === null || a === undefined || b === undefined) return a === b;
  return a.equals(b);
}

async function kafkaDlq(topic: string): Promise<DeadLetterQueue> {
  const config = await resolveConfig({
    kafka: { brokers: [BROKER], topics: ['unused'], group_id: uniqueName('dlq-group') },
    sinks: {},
    dlq: { topic, partitions: 2, read_timeout_ms: 30_000 },
  });
  return createDeadLetterQueue(config, logger)!;
}

async function bullmqDlq(queue: string, prefix: string, port = REDIS_PORT): Promise<DeadLetterQueue> {
  const config = await resolveConfig({
    kafka: { brokers: [BROKER], topics: ['unused'] },
    sinks: {},
    dlq: { kind: 'bullmq', queue, prefix, redis: { url: `redis://127.0.0.1:${port}` } },
  });
  return createDeadLetterQueue(config, logger)!;
}

/** Deletes every key under a test's own prefix (the server is shared: never anything else). */
async function deletePrefix(prefix: string): Promise<void> {
  const redis = new Redis({ host: '127.0.0.1', port: REDIS_PORT, lazyConnect: true });
  await redis.connect();
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** The records of a topic as a plain consumer sees them, to check what Connect tooling would read. */
async function readRaw(topic: string, count: number) {
  const kafka = testKafka();
  const groupId = uniqueName('raw-reader');
  const consumer = kafka.consumer({ groupId });
  const seen: { key: Buffer | null; value: Buffer | null; headers: Record<string, unknown> }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void seen.push({ key: message.key, value: message.value, headers: message.headers ?? {} }) });
    await waitUntil(() => seen.length >= count, 30_000, `${count} records in ${topic}`);
  } finally {
    await consumer.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
  return seen;
}

const backends: { name: string; open(): Promise<{ dlq: DeadLetterQueue; cleanup(): Promise<void>; topic?: string }> }[] = [
  {
    name: 'kafka',
    async open() {
      const topic = uniqueName('dlq-topic');
      const dlq = await kafkaDlq(topic);
      return {
        dlq,
        topic,
        async cleanup() {
          const admin = testKafka().admin();
          await admin.connect();
          await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
          await admin.disconnect();
        },
      };
    },
  },
  {
    name: 'bullmq',
    async open() {
      const prefix = uniqueName('cdc-test-dlq');
      const dlq = await bullmqDlq(uniqueName('dlq-queue'), prefix);
      return { dlq, cleanup: () => deletePrefix(prefix) };
    },
  },
];

describe.each(backends)('$name dead-letter queue', (backend) => {
  it('stores entries byte for byte, lists, gets, filters and marks them', async () => {
    const { dlq, cleanup, topic } = await backend.open();
    try {
      await dlq.start();
      const input = letters();
      const ids: string[] = [];
      for (const l of input) ids.push(await dlq.put(l));
      expect(new Set(ids).size).toBe(3);

      const listed = await dlq.list();
      expect(listed.map((e) => e.id).sort()).toEqual([...ids].sort());
      for (const [i, l] of input.entries()) {
        const e = await dlq.get(ids[i]!);
        expect(e).toBeDefined();
        expect(e!.status).toBe('open');
        expect(e!.context).toEqual(l.context);
        expect(sameBytes(e!.key, l.key)).toBe(true);
        expect(sameBytes(e!.value, l.value)).toBe(true);
        expect(Object.keys(e!.headers).sort()).toEqual(Object.keys(l.headers).sort());
        for (const [k, v] of Object.entries(l.headers)) expect(sameBytes(e!.headers[k], v)).toBe(true);
      }
      expect(await dlq.get('77-77777')).toBeUndefined();

      expect((await dlq.list({ table: 'public.a' })).map((e) => e.id)).toEqual([ids[1]]);
      expect((await dlq.list({ sink: 'pg' })).map((e) => e.id)).toEqual([ids[2]]);
      expect((await dlq.list({ stage: 'decode' })).map((e) => e.id)).toEqual([ids[0]]);
      expect((await dlq.list({ since: 1_700_000_002_500 })).map((e) => e.id)).toEqual([ids[2]]);
      expect(await dlq.list({ limit: 2 })).toHaveLength(2);

      await dlq.mark(ids[0]!, 'discarded');
      await dlq.mark(ids[1]!, 'replayed');
      expect((await dlq.list()).map((e) => e.id)).toEqual([ids[2]]);
      expect((await dlq.list({ status: 'discarded' })).map((e) => e.id)).toEqual([ids[0]]);
      const all = await dlq.list({ status: 'all' });
      expect(Object.fromEntries(all.map((e) => [e.id, e.status]))).toEqual({
        [ids[0]!]: 'discarded',
        [ids[1]!]: 'replayed',
        [ids[2]!]: 'open',
      });
      expect(all.find((e) => e.id === ids[1])?.statusAt).toBeGreaterThan(0);
      await expect(dlq.mark('99-99999', 'discarded')).rejects.toMatchObject({ code: 'UNKNOWN_ENTRY' });

      if (topic) {
        // The entry records carry the original bytes as key and value and Connect's error headers.
        const raw = await readRaw(topic, 5);
        const first = raw.find((r) => sameBytes(r.key, input[0]!.key))!;
        expect(sameBytes(first.value, input[0]!.value)).toBe(true);
        const text = (name: string) => {
          const v = first.headers[name];
          const last = Array.isArray(v) ? v[v.length - 1] : v;
          return Buffer.isBuffer(last) ? last.toString() : undefined;
        };
        expect(text(CONNECT_HEADERS.topic)).toBe('shop.public.items');
        expect(text(CONNECT_HEADERS.partition)).toBe('1');
        expect(text(CONNECT_HEADERS.offset)).toBe('10');
        expect(text(CONNECT_HEADERS.stage)).toBe('VALUE_CONVERTER');
        expect(text(CONNECT_HEADERS.exceptionClass)).toBe('DecodeError');
        expect(text(CONNECT_HEADERS.message)).toContain('not valid JSON');
        expect(text(CONNECT_HEADERS.stacktrace)).toContain('at here');
        expect(text(CONNECT_HEADERS.className)).toBeDefined();
        expect(text(CDC_HEADERS.stage)).toBe('decode');
        expect(text(CDC_HEADERS.code)).toBe('MALFORMED_JSON');
        expect(sameBytes(first.headers['h-bin'] as Buffer, bytes(0x80, 0x81))).toBe(true);
        // The original header with a reserved name comes first, ours after it.
        expect((first.headers[CONNECT_HEADERS.topic] as Buffer[])[0]!.toString()).toBe('upstream');
      }
    } finally {
      await dlq.close();
      await dlq.close();
      await cleanup();
    }
  });
});

function captureIo(): DlqIo & { out: PassThrough; text(): { out: string; err: string } } {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
  out.on('data', (c: Buffer) => chunks.out.push(c));
  err.on('data', (c: Buffer) => chunks.err.push(c));
  return { out, err, text: () => ({ out: Buffer.concat(chunks.out).toString(), err: Buffer.concat(chunks.err).toString() }) };
}

interface Line {
  offset: string;
  after: Record<string, unknown> | null;
}

const readLines = (path: string) => readJsonLines<Line>(path);

describe('dead-letter queue in the router, and the dlq commands', () => {
  let kafka: KafkaFixture;
  let dir: string;
  const dlqTopics: string[] = [];
  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-dlq-'));
  });
  afterAll(async () => {
    await kafka.admin.deleteTopics({ topics: dlqTopics }).catch(() => undefined);
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('dead-letters exactly the bad records, commits to the end, and replays a fixed one', async () => {
    const prefix = uniqueName('dlq');
    const topic = `${prefix}.public.items`;
    const dlqTopic = `${prefix}.dlq`;
    dlqTopics.push(dlqTopic);
    await kafka.createTopic(topic, 1);
    const good = (id: number, name = `item-${id}`) =>
      envelope({ op: 'c', table: 'items', key: { id }, after: { id, name }, lsn: 100 + id * 8, prefix });
    const unknownOp = JSON.parse(good(5).value) as Record<string, unknown>;
    unknownOp['op'] = 'x';
    const messages: { key: string | null; value: string }[] = [
      good(1),
      { key: '{"id":2}', value: '{"op":"c", "after": {' },
      good(3),
      { key: '{"id":4}', value: '[1,2,3]' },
      { key: '{"id":5}', value: JSON.stringify(unknownOp) },
      { key: null, value: good(6).value },
      good(7, 'boom'),
      good(8),
    ];
    await kafka.producer.send({ topic, messages });

    // A handler that refuses a value: the transform-stage failure a later config fixes.
    const handlers = join(dir, 'strict-handlers.mjs');
    await writeFile(
      handlers,
      `export default { handlers: [{ table: 'public.items', transforms: [function rejectBoom(e) {
        if (e.after && e.after.name === 'boom') throw new Error('name "boom" is not allowed');
        return e;
      }] }] };\n`,
    );
    const out = join(dir, `${prefix}.jsonl`);
    const group = uniqueName('dlq-group');
    const document = {
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: { out: { kind: 'file', path: out, fsync: false } },
      routes: [{ table: 'public.items', sinks: ['out'] }],
      retry: { initial_ms: 50, max_ms: 500 },
      dlq: { kind: 'kafka', topic: dlqTopic },
    };
    const events = new RouterEvents();
    const lettered: { offset: string; id: string; stage: string }[] = [];
    events.on('record.dead-lettered', (e) => lettered.push(e));
    const halted: string[] = [];
    events.on('partition.halted', (h) => halted.push(`${h.offset}: ${h.error.message}`));
    const service = await startService(await resolveConfig({ ...document, handlers }), { logger, events });
    try {
      await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === 8n, 60_000, 'commit to the end');
    } finally {
      await service.stop();
    }
    expect(halted).toEqual([]);
    expect(lettered.map((l) => l.offset)).toEqual(['1', '3', '4', '5', '6']);
    expect((await readLines(out)).map((l) => l.offset)).toEqual(['0', '2', '7']);

    // The fixed config: the same, without the strict handler.
    const fixed = join(dir, `${prefix}.json`);
    await writeFile(fixed, JSON.stringify(document));

    const listed = await cli(['dlq', 'list', '--config', fixed, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const entries = JSON.parse(listed.stdout) as {
      id: string;
      offset: string;
      stage: string;
      status: string;
      table: string | null;
      error: { code: string; message: string };
      value: { utf8: string } | null;
    }[];
    expect(entries.map((e) => [e.offset, e.stage, e.error.code])).toEqual([
      ['1', 'decode', 'MALFORMED_JSON'],
      ['3', 'decode', 'NOT_AN_ENVELOPE'],
      ['4', 'decode', 'UNKNOWN_OP'],
      ['5', 'decode', 'MISSING_KEY'],
      ['6', 'transform', 'TRANSFORM_FAILED'],
    ]);
    const byOffset = new Map(entries.map((e) => [e.offset, e]));
    expect(byOffset.get('1')!.error.message).toContain('value is not valid JSON');
    expect(byOffset.get('1')!.value).toEqual({ utf8: '{"op":"c", "after": {' });
    expect(byOffset.get('3')!.error.message).toContain('value is an array, not a Debezium envelope');
    expect(byOffset.get('4')!.error.message).toContain('unknown op "x"');
    expect(byOffset.get('5')!.error.message).toContain('null Kafka key');
    expect(byOffset.get('6')!.error.message).toContain('name "boom" is not allowed');
    expect(byOffset.get('6')!.table).toBe('public.items');
    expect(entries.every((e) => e.status === 'open')).toBe(true);

    // Replay the transform failure with today's (fixed) config: written, marked replayed.
    const boom = byOffset.get('6')!.id;
    const replayed = await cli(['dlq', 'replay', boom, '--config', fixed, '--json']);
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(JSON.parse(replayed.stdout)).toEqual([expect.objectContaining({ id: boom, outcome: 'replayed', sinks: ['out'], table: 'public.items', op: 'c' })]);
    const lines = await readLines(out);
    expect(lines.map((l) => l.offset)).toEqual(['0', '2', '7', '6']);
    expect(lines[3]!.after).toEqual({ id: 7, name: 'boom' });

    // A decode failure still fails: exit 1, the entry stays open.
    const bad = byOffset.get('1')!.id;
    const io1 = captureIo();
    expect(await runDlqReplay(bad, { config: fixed }, io1)).toBe(1);
    expect(io1.text().out).toMatch(/failed.*MALFORMED_JSON/);

    const shown = captureIo();
    expect(await runDlqShow(bad, { config: fixed }, shown)).toBe(0);
    expect(shown.text().out).toContain(`entry ${bad}`);
    expect(shown.text().out).toContain('{"op":"c", "after": {');
    expect(shown.text().out).toContain('VALUE_CONVERTER');

    // Discard the decode failures: gone from the default list, kept under --status.
    const discarded = captureIo();
    expect(await runDlqDiscard(undefined, { config: fixed, stage: 'decode' }, discarded)).toBe(0);
    expect(discarded.text().out).toContain('4 discarded');
    const open = captureIo();
    expect(await runDlqList({ config: fixed }, open)).toBe(0);
    expect(open.text().out).toBe(`0 entries in ${dlqTopic}\n`);
    const table = captureIo();
    expect(await runDlqList({ config: fixed, status: 'discarded', stage: 'decode', limit: '2' }, table)).toBe(0);
    const rows = table.text().out.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^ID\s+STATUS\s+STAGE\s+TABLE\s+SINK\s+SOURCE\s+LAST FAILURE\s+CODE\s+MESSAGE$/);
    expect(rows.slice(1, 3).map((r) => r.split(/\s+/).slice(1, 3))).toEqual([
      ['discarded', 'decode'],
      ['discarded', 'decode'],
    ]);
    expect(rows[3]).toBe(`2 entries in ${dlqTopic}`);
    const all = captureIo();
    expect(await runDlqList({ config: fixed, status: 'all', json: true }, all)).toBe(0);
    const statuses = (JSON.parse(all.text().out) as { offset: string; status: string }[]).map((e) => [e.offset, e.status]);
    expect(statuses).toEqual([
      ['1', 'discarded'],
      ['3', 'discarded'],
      ['4', 'discarded'],
      ['5', 'discarded'],
      ['6', 'replayed'],
    ]);

    const unknown = await cli(['dlq', 'show', '9-99999', '--config', fixed]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no entry 9-99999');
    const usage = await cli(['dlq', 'list', '--config', fixed, '--bogus']);
    expect(usage.code).toBe(2);
  });

  it('while the dead-letter queue is away the partition waits: nothing past the bad record is committed', async () => {
    // A TCP proxy to the machine's Redis that the test can cut and restore.
    const sockets = new Set<Socket>();
    const proxy: Server = createServer((client) => {
      const upstream = connect(REDIS_PORT, '127.0.0.1');
      sockets.add(client).add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream).pipe(client);
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const port = (proxy.address() as { port: number }).port;
    const cut = async () => {
      const closed = new Promise((r) => proxy.close(r));
      for (const s of sockets) s.destroy();
      sockets.clear();
      await closed;
    };

    const prefix = uniqueName('dlq-away');
    const redisPrefix = uniqueName('cdc-test-dlq');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 1);
    const out = join(dir, `${prefix}.jsonl`);
    const group = uniqueName('dlq-away-group');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: { out: { kind: 'file', path: out, fsync: false } },
      routes: [{ table: 'public.items', sinks: ['out'] }],
      retry: { initial_ms: 50, max_ms: 300 },
      dlq: { kind: 'bullmq', queue: 'away', prefix: redisPrefix, redis: { url: `redis://127.0.0.1:${port}` } },
    });
    // Log lines are the only trace of a waiting put: collect them.
    const logs: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    const service = await startService(config, { logger: pino({ level: 'warn' }, sink) });
    try {
      await cut();
      const good = (id: number) => envelope({ op: 'c', table: 'items', key: { id }, after: { id }, lsn: 100 + id * 8, prefix });
      await kafka.producer.send({ topic, messages: [good(1), { key: '{"id":2}', value: 'not json' }, good(3)] });
      await waitUntil(() => logs.some((l) => l.includes('dead-letter write failed; retrying')), 60_000, 'a retried dead-letter write');
      await waitUntil(async () => (await readLines(out)).length === 2, 30_000, 'the good records written');
      // The good record before the bad one may be committed; nothing at or past the bad one is.
      const before = (await kafka.committed(group, topic)).get(0) ?? -1n;
      expect(before <= 1n).toBe(true);

      proxy.listen(port, '127.0.0.1');
      await once(proxy, 'listening');
      await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === 3n, 60_000, 'commit to the end once Redis is back');
    } finally {
      await service.stop();
      proxy.close();
    }
    const dlq = await bullmqDlq('away', redisPrefix);
    try {
      await dlq.start();
      const entries = await dlq.list();
      expect(entries.map((e) => [e.context.offset, e.context.errorCode])).toEqual([['1', 'MALFORMED_JSON']]);
    } finally {
      await dlq.close();
      await deletePrefix(redisPrefix);
    }
  });
});
