import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Client as EsClient } from '@elastic/elasticsearch';
import { Redis } from 'ioredis';
import pg from 'pg';
import { destination, pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents, type CircuitState } from '../../src/events.ts';
import { startService } from '../../src/service.ts';
import { envelope, type RowOf } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import {
  startPrivateElasticsearch,
  startPrivatePostgres,
  startPrivateRedis,
  type PrivateServer,
} from '../support/private-servers.ts';

/**
 * Failures without loss: a router writing a steady stream to private Redis, PostgreSQL and
 * Elasticsearch servers while each of them is stopped in turn and started again on the same port.
 * The router is never restarted. Afterwards every store must hold exactly the rows the produced
 * events imply, the dead-letter queue must be empty (an outage is retriable, never a reason to
 * dead-letter), and the committed offsets must be the end offsets.
 */

type SinkName = 'pg' | 'cache' | 'search' | 'log';

interface TableSpec {
  readonly name: string;
  readonly partitions: number;
  readonly sinks: readonly SinkName[];
  /** JsonConverter with schemas.enable (the schema block) or without. */
  readonly withSchema: boolean;
  /** Share of the produced events. */
  readonly weight: number;
  /** Keys 1..keys are updated, deleted and created again; 0: append-only, a new key per event. */
  readonly keys: number;
  key(n: number): RowOf;
  row(n: number, version: number): RowOf;
  /** The key of a stored row, as the expected state names it. */
  keyOf(row: Readonly<Record<string, unknown>>): string;
}

const byId = (r: Readonly<Record<string, unknown>>) => String(r['id']);

const TABLES: readonly TableSpec[] = [
  {
    name: 'customers',
    partitions: 3,
    sinks: ['pg', 'cache', 'search'],
    withSchema: true,
    weight: 30,
    keys: 60,
    key: (n) => ({ id: n }),
    row: (n, v) => ({ id: n, name: `customer ${n} ✓ v${v}`, email: v % 3 === 0 ? null : `c${n}.v${v}@shop.test`, visits: v }),
    keyOf: byId,
  },
  {
    name: 'order_lines',
    partitions: 2,
    sinks: ['pg', 'cache', 'search'],
    withSchema: false,
    weight: 25,
    keys: 60,
    key: (n) => ({ order_id: Math.ceil(n / 3), line_no: ((n - 1) % 3) + 1 }),
    row: (n, v) => ({ order_id: Math.ceil(n / 3), line_no: ((n - 1) % 3) + 1, sku: `sku-${n}`, qty: v }),
    keyOf: (r) => `${String(r['order_id'])}|${String(r['line_no'])}`,
  },
  // One table per store alone: while another store is down, these must keep flowing.
  {
    name: 'ledger',
    partitions: 1,
    sinks: ['pg'],
    withSchema: true,
    weight: 10,
    keys: 30,
    key: (n) => ({ id: n }),
    row: (n, v) => ({ id: n, amount: n * 100 + v, memo: `entry ${n}/${v}` }),
    keyOf: byId,
  },
  {
    name: 'sessions',
    partitions: 1,
    sinks: ['cache'],
    withSchema: false,
    weight: 10,
    keys: 30,
    key: (n) => ({ id: n }),
    row: (n, v) => ({ id: n, token: `t-${n}-${v}`, hits: v }),
    keyOf: byId,
  },
  {
    name: 'articles',
    partitions: 1,
    sinks: ['search'],
    withSchema: false,
    weight: 10,
    keys: 30,
    key: (n) => ({ id: n }),
    row: (n, v) => ({ id: n, title: `article ${n} rev ${v}`, words: 100 + v }),
    keyOf: byId,
  },
  {
    name: 'audit',
    partitions: 2,
    sinks: ['log'],
    withSchema: false,
    weight: 15,
    keys: 0,
    key: (n) => ({ seq: n }),
    row: (n) => ({ seq: n, actor: `user-${n % 7}`, action: n % 2 ? 'login' : 'logout' }),
    keyOf: (r) => String(r['seq']),
  },
];

/** Small seeded generator (mulberry32): the same workload on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Message {
  readonly topic: string;
  readonly key: string;
  readonly value: string | null;
}

/**
 * Random creates, updates and deletes (with Debezium's tombstone) over each table's keys, positions
 * increasing; keeps the state every store must end up with.
 */
function createWorkload(prefix: string, seed: number) {
  const next = random(seed);
  const totalWeight = TABLES.reduce((s, t) => s + t.weight, 0);
  const expected = new Map(TABLES.map((t) => [t.name, new Map<string, RowOf | undefined>()]));
  const versions = new Map(TABLES.map((t) => [t.name, new Map<number, number>()]));
  const alive = new Map(TABLES.map((t) => [t.name, new Set<number>()]));
  let lsn = 1_000;
  let appended = 0;
  let events = 0;

  function pick(): TableSpec {
    let r = next() * totalWeight;
    for (const t of TABLES) {
      r -= t.weight;
      if (r < 0) return t;
    }
    return TABLES[TABLES.length - 1]!;
  }

  return {
    expected,
    get events() {
      return events;
    },
    /** One change (two messages for a delete), already counted in the expected state. */
    change(): Message[] {
      const t = pick();
      const topic = `${prefix}.public.${t.name}`;
      const n = t.keys === 0 ? ++appended : 1 + Math.floor(next() * t.keys);
      const live = alive.get(t.name)!;
      const version = (versions.get(t.name)!.get(n) ?? 0) + 1;
      versions.get(t.name)!.set(n, version);
      const key = t.key(n);
      const op = !live.has(n) ? 'c' : next() < 0.1 ? 'd' : 'u';
      const after = op === 'd' ? null : t.row(n, version);
      const env = envelope({
        op,
        table: t.name,
        key,
        before: op === 'c' ? null : key,
        after,
        lsn: (lsn += 8),
        prefix,
        withSchema: t.withSchema,
      });
      events++;
      expected.get(t.name)!.set(t.keyOf(after ?? key), after ?? undefined);
      if (op === 'd') live.delete(n);
      else live.add(n);
      const messages: Message[] = [{ topic, key: env.key, value: env.value }];
      if (op === 'd') messages.push({ topic, key: env.key, value: null });
      return messages;
    },
  };
}

type Offsets = Map<string, bigint>;

const strip = (row: Readonly<Record<string, unknown>>) => Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('__cdc')));

/** What differs between the expected rows and a store's rows (at most 20 lines). */
function differences(want: ReadonlyMap<string, RowOf | undefined>, got: ReadonlyMap<string, Record<string, unknown>>): string[] {
  const problems: string[] = [];
  for (const [k, v] of want) {
    const g = got.get(k);
    if (v === undefined) {
      if (g) problems.push(`${k}: deleted, but the store holds ${JSON.stringify(g)}`);
    } else if (!g) problems.push(`${k}: missing (want ${JSON.stringify(v)})`);
    else if (!isDeepStrictEqual(strip(g), v)) problems.push(`${k}: want ${JSON.stringify(v)}, got ${JSON.stringify(strip(g))}`);
  }
  for (const k of got.keys()) if (!want.has(k)) problems.push(`${k}: never produced`);
  return problems.slice(0, 20);
}

const sleepUntil = (at: number) => new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));

describe('store outages: no loss, no dead letters, no restart', () => {
  let kafka: KafkaFixture;
  let redis: PrivateServer | undefined;
  let postgres: PrivateServer | undefined;
  let elastic: PrivateServer | undefined;
  let dir: string;
  let keepDir = true;
  const dlqTopic = uniqueName('outage-dlq');

  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-outage-'));
    // Elasticsearch takes ~20 s: the three start together.
    const started = await Promise.allSettled([startPrivateRedis(), startPrivatePostgres(), startPrivateElasticsearch()]);
    [redis, postgres, elastic] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
  });

  afterAll(async () => {
    const results = await Promise.allSettled([redis?.destroy(), postgres?.destroy(), elastic?.destroy()]);
    await kafka.admin.deleteTopics({ topics: [dlqTopic] }).catch(() => undefined);
    await kafka.close();
    if (keepDir) console.log(`outage test: router log and files kept in ${dir}`);
    else await rm(dir, { recursive: true, force: true });
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  });

  it('survives Redis, PostgreSQL and Elasticsearch going away in turn', async () => {
    const redisServer = redis!;
    const pgServer = postgres!;
    const esServer = elastic!;
    const prefix = uniqueName('outage');
    const id = prefix.replace(/-/g, '_');
    const pgSchema = `it_${id}`;
    const redisPrefix = `${id}:`;
    const esPrefix = prefix;
    const topicOf = (t: TableSpec) => `${prefix}.public.${t.name}`;
    for (const t of TABLES) await kafka.createTopic(topicOf(t), t.partitions);
    const topicsTo = (sink: SinkName, routed: boolean) => TABLES.filter((t) => t.sinks.includes(sink) === routed).map(topicOf);

    const group = uniqueName('outage-group');
    const auditFile = join(dir, 'audit.jsonl');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: TABLES.map(topicOf) },
      sinks: {
        pg: { kind: 'postgres', connection: { connection_string: pgServer.url }, schema: pgSchema },
        cache: { kind: 'redis', url: redisServer.url, key_prefix: redisPrefix, mode: 'json' },
        search: { kind: 'elasticsearch', nodes: esServer.url, index_template: `${esPrefix}-{table}`, request_timeout_ms: 10_000 },
        log: { kind: 'file', path: auditFile, fsync: false },
      },
      routes: TABLES.map((t) => ({ table: `public.${t.name}`, sinks: t.sinks })),
      // Retried forever (no deadline): an outage must never turn into dead letters.
      retry: { initial_ms: 100, max_ms: 2_000, circuit_open_ms: 2_000 },
      dlq: { kind: 'kafka', topic: dlqTopic },
      metrics: { enabled: false },
    });

    const events = new RouterEvents();
    const circuits: { sink: string; state: CircuitState; at: number }[] = [];
    const deadLettered: string[] = [];
    const failed: string[] = [];
    let joins = 0;
    events.on('sink.circuit', (c) => circuits.push({ ...c, at: Date.now() }));
    events.on('record.dead-lettered', (d) => deadLettered.push(`${d.topic}/${d.partition}@${d.offset} ${d.sink}: ${d.error.message}`));
    events.on('record.failed', (f) => failed.push(`${f.topic}/${f.partition}@${f.offset}: ${f.error.message}`));
    events.on('partition.halted', (h) => failed.push(`halted ${h.topic}/${h.partition}@${h.offset}: ${h.error.message}`));
    events.on('group.joined', () => joins++);

    // A store going away must not crash the router: outside a test runner an uncaught exception ends the process.
    const uncaught: string[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);

    const logger = pino({ level: 'info' }, destination({ dest: join(dir, 'router.log'), sync: true }));
    const service = await startService(config, { logger, events });

    // The steady stream: a few changes every 100 ms, for the whole test, all servers up or not.
    const workload = createWorkload(prefix, 20_250_131);
    let producing = true;
    let producerError: unknown;
    const producer = (async () => {
      while (producing) {
        const messages = [workload.change(), workload.change(), workload.change()].flat();
        const topicMessages = [...new Set(messages.map((m) => m.topic))].map((topic) => ({
          topic,
          messages: messages.filter((m) => m.topic === topic).map((m) => ({ key: m.key, value: m.value })),
        }));
        await kafka.producer.sendBatch({ topicMessages });
        await new Promise((r) => setTimeout(r, 100));
      }
    })().catch((err: unknown) => {
      producing = false;
      producerError = err;
    });

    const partitionsOf = async (topics: readonly string[], read: (topic: string) => Promise<Map<number, bigint>>): Promise<Offsets> => {
      const out: Offsets = new Map();
      for (const topic of topics) for (const [p, o] of await read(topic)) out.set(`${topic}/${p}`, o);
      return out;
    };
    const ends = (topics: readonly string[]) => partitionsOf(topics, (t) => kafka.endOffsets(t));
    const commits = (topics: readonly string[]) => partitionsOf(topics, (t) => kafka.committed(group, t));
    /** Partitions whose commit has not reached the target yet. */
    const behind = (committed: Offsets, target: Offsets) =>
      [...target].filter(([tp, end]) => (committed.get(tp) ?? -1n) < end).map(([tp, end]) => `${tp} ${committed.get(tp) ?? -1n}<${end}`);
    const allTopics = TABLES.map(topicOf);

    /**
     * Makes sure a PostgreSQL write is in flight when the server dies: the ledger table is locked,
     * so the router's next ledger write waits on it holding a pooled connection.
     */
    const holdPgWrite = async () => {
      const locker = new pg.Client({ connectionString: pgServer.url });
      locker.on('error', () => undefined); // it dies with the server
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${pgSchema}".ledger IN ACCESS EXCLUSIVE MODE`);
      await waitUntil(
        async () => {
          const res = await locker.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_locks WHERE relation = '"${pgSchema}".ledger'::regclass AND NOT granted`,
          );
          return res.rows[0]!.n > 0;
        },
        15_000,
        'a router write waiting on the locked ledger table',
      );
    };
    const phases: { server: PrivateServer; sink: SinkName; downMs: number; beforeStop?: () => Promise<void> }[] = [
      { server: redisServer, sink: 'cache', downMs: 30_000 },
      { server: pgServer, sink: 'pg', downMs: 30_000, beforeStop: holdPgWrite },
      // Elasticsearch then needs ~20 s more to come back: about 40 s away in all.
      { server: esServer, sink: 'search', downMs: 20_000 },
    ];

    try {
      try {
        // Flowing everywhere before the first outage.
        const partitions = TABLES.reduce((n, t) => n + t.partitions, 0);
        await waitUntil(
          async () => {
            const committed = await commits(allTopics);
            return committed.size === partitions && [...committed.values()].every((o) => o > 0n);
          },
          60_000,
          'a first commit on every partition',
        );

        for (const { server, sink, downMs, beforeStop } of phases) {
          const affected = topicsTo(sink, true);
          const unaffected = topicsTo(sink, false);
          await beforeStop?.();
          const t0 = Date.now();
          // The outage itself is what is tested: its length is fixed, the rest waits for state.
          await server.stop();
          await waitUntil(() => circuits.some((c) => c.sink === sink && c.state === 'open' && c.at >= t0), 30_000, `the ${sink} circuit to open`);

          await sleepUntil(t0 + downMs / 2);
          // Partitions that do not write to the stopped store go on: what was produced by now gets committed while it is still down.
          const target = await ends(unaffected);
          const frozen = await commits(affected);
          await waitUntil(async () => behind(await commits(unaffected), target).length === 0, downMs / 2 - 1_000, `commits of ${unaffected.join(', ')} while ${sink} is down`);
          expect(Date.now()).toBeLessThan(t0 + downMs);
          await sleepUntil(t0 + downMs);
          // Nothing past an unacknowledged record is committed.
          expect(await commits(affected)).toEqual(frozen);

          await server.start();
          const restarted = Date.now();
          const backlog = await ends(affected);
          await waitUntil(async () => behind(await commits(affected), backlog).length === 0, 90_000, `the ${sink} backlog to be committed after the restart`);
          // The trial write that closes it may succeed before the start script has seen the server healthy.
          const last = () => circuits.filter((c) => c.sink === sink).at(-1);
          await waitUntil(() => last()?.state === 'closed' && last()!.at > t0, 30_000, `the ${sink} circuit to close`);
          console.log(
            `outage of ${sink}: down ${restarted - t0} ms, backlog committed ${Date.now() - restarted} ms after the restart; ` +
              `${workload.events} changes produced so far`,
          );
        }
      } finally {
        producing = false;
        await producer;
      }
      if (producerError) throw producerError;

      const end = await ends(allTopics);
      await waitUntil(async () => behind(await commits(allTopics), end).length === 0, 90_000, 'commits to reach the end offsets');
      expect(behind(await commits(allTopics), await ends(allTopics))).toEqual([]);
    } finally {
      await service.stop();
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
    }

    expect(uncaught).toEqual([]);
    expect(failed).toEqual([]);
    expect(deadLettered).toEqual([]);
    const dlqEnds = await kafka.endOffsets(dlqTopic);
    expect([...dlqEnds.values()].every((o) => o === 0n)).toBe(true);
    expect(joins).toBe(1);
    for (const { sink } of phases) {
      expect(circuits.filter((c) => c.sink === sink).map((c) => c.state)).toContain('open');
      expect(circuits.filter((c) => c.sink === sink).at(-1)?.state).toBe('closed');
    }
    expect(workload.events).toBeGreaterThan(2_000);

    // Row by row, every store against the expected state.
    const wanted = (sink: SinkName) => TABLES.filter((t) => t.sinks.includes(sink));
    const pgClient = new pg.Client({ connectionString: pgServer.url });
    await pgClient.connect();
    const redisClient = new Redis(redisServer.url, { maxRetriesPerRequest: 2 });
    const es = new EsClient({ node: esServer.url });
    try {
      for (const t of wanted('pg')) {
        const res = await pgClient.query<{ row: Record<string, unknown> }>(`SELECT to_jsonb(t) AS row FROM "${pgSchema}"."${t.name}" t`);
        const rows = new Map(res.rows.map((r) => [t.keyOf(r.row), r.row]));
        expect(rows.size).toBe(res.rows.length);
        expect(differences(workload.expected.get(t.name)!, rows), `postgres ${t.name}`).toEqual([]);
      }
      for (const t of wanted('cache')) {
        const rows = new Map<string, Record<string, unknown>>();
        let cursor = '0';
        do {
          const [nextCursor, keys] = await redisClient.scan(cursor, 'MATCH', `${redisPrefix}${t.name}:*`, 'COUNT', 1000);
          cursor = nextCursor;
          for (const key of keys) {
            const value = await redisClient.get(key);
            if (value === null) continue;
            const row = JSON.parse(value) as Record<string, unknown>;
            rows.set(t.keyOf(row), row);
          }
        } while (cursor !== '0');
        expect(differences(workload.expected.get(t.name)!, rows), `redis ${t.name}`).toEqual([]);
      }
      for (const t of wanted('search')) {
        const index = `${esPrefix}-${t.name}`;
        await es.indices.refresh({ index });
        const res = await es.search<Record<string, unknown>>({ index, size: 10_000, query: { match_all: {} } });
        const rows = new Map(res.hits.hits.map((h) => [t.keyOf(h._source!), h._source!]));
        expect(rows.size).toBe(res.hits.hits.length);
        expect(differences(workload.expected.get(t.name)!, rows), `elasticsearch ${t.name}`).toEqual([]);
      }
      // The file sink appends: every audit change is there (a redelivery may repeat one, never lose one).
      const lines = (await readFile(auditFile, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { table: string; after: Record<string, unknown> });
      const audit = TABLES.find((t) => t.name === 'audit')!;
      const seen = new Map(lines.filter((l) => l.table === 'public.audit').map((l) => [audit.keyOf(l.after), l.after]));
      expect(differences(workload.expected.get('audit')!, seen), 'file audit').toEqual([]);
    } finally {
      await pgClient.end();
      redisClient.disconnect();
      await es.close();
    }
    keepDir = false;
  }, 300_000);
});
