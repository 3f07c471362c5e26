import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelope, type RowOf } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, type KafkaFixture } from '../support/kafka.ts';
import {
  chaosSeed,
  killAll,
  ROOT,
  seededRandom,
  startRouter,
  tail,
  waitOrExplain,
  writeRouterConfig,
  type RouterProcess,
} from '../support/router-process.ts';
import { canonical, ES_URL, openStores, PG_URL, REDIS_URL, type Stores } from '../support/stores.ts';

/**
 * Failures without loss: 50,000 Debezium changes over three tables and 18 partitions, produced up
 * front, replicated by a router process into PostgreSQL, Redis, Elasticsearch and a file while it
 * is killed with SIGKILL twenty times at random points (restarted at once each time).
 *
 * What must hold at the end: every store equals the last change per key by source position
 * (deleted keys absent), row by row; every change offset is in the file sink at least once
 * (redelivery after a crash is allowed, a gap is not); committed offsets equal the end offsets and
 * never moved backwards; the dead-letter queue is empty.
 */

const SEED = chaosSeed(0xc4a05);
const EVENTS = 50_000;
const KILLS = 20;
const PARTITIONS = 6;
/**
 * The pace of a fifth sink that stands for a slower store. Without it the router replicates the
 * 50,000 changes in a few seconds, within the first three kills; at this pace they span the twenty
 * (about 2.5 s of work between kills) and the last router still has some left.
 */
const RECORDS_PER_SECOND = 900;

/**
 * A handlers module adding the `paced` sink kind: it acknowledges records at a fixed rate, shared
 * by every partition of the process, like a store with a throughput limit. Plain JavaScript written
 * next to the config (as a user's handlers module would be), loading zod from this project.
 */
const PACED_SINK_MODULE = `import { createRequire } from 'node:module';
const { z } = createRequire(${JSON.stringify(join(ROOT, 'package.json'))})('zod');
let next = 0;
export default {
  sinkKinds: {
    paced: {
      kind: 'paced',
      configSchema: z.object({ records_per_second: z.number().positive() }).strict(),
      create(name, config) {
        return {
          name,
          kind: 'paced',
          async start() {},
          async close() {},
          async write(batch) {
            const now = Date.now();
            next = Math.max(next, now) + (batch.length * 1000) / config.records_per_second;
            await new Promise((resolve) => setTimeout(resolve, next - now));
            return batch.map(() => ({ ok: true }));
          },
        };
      },
    },
  },
};
`;

type Table = 'customers' | 'orders' | 'order_lines';
const TABLES: readonly Table[] = ['customers', 'orders', 'order_lines'];
/** Share of the events, distinct keys, and hot keys (that take 30% of the table's events). */
const SHAPE: Record<Table, { share: number; keys: number; hot: number }> = {
  customers: { share: 0.4, keys: 3_000, hot: 10 },
  orders: { share: 0.3, keys: 3_000, hot: 10 },
  order_lines: { share: 0.3, keys: 3_000, hot: 12 },
};

function keyOf(table: Table, n: number): RowOf {
  return table === 'order_lines' ? { order_id: Math.floor(n / 3) + 1, line_no: (n % 3) + 1 } : { id: n + 1 };
}

/** The key as the file sink, the stores and the expectation all spell it. */
function keyText(table: Table, row: Record<string, unknown>): string {
  return table === 'order_lines' ? `${String(row['order_id'])}|${String(row['line_no'])}` : String(row['id']);
}

function rowOf(table: Table, key: RowOf, version: number, n: number): RowOf {
  switch (table) {
    case 'customers':
      // Eighths are exact in binary: a double and its JSON text round-trip through every store. Never
      // a whole number: the schema block (inferred from the value) must say double for every event,
      // as a real source's would; an int64 first would make the PostgreSQL column bigint.
      return { ...key, name: `customer ${n} v${version} ✓`, email: `c${n}.v${version}@shop.test`, score: (n % 100) + 0.5 + (version % 4) / 8, vip: version % 5 === 0 };
    case 'orders':
      return { ...key, customer_id: (n * 7) % 3_000, status: ['new', 'paid', 'shipped', 'done'][version % 4]!, total_cents: version * 100 + (n % 97), note: `note "${version}"` };
    case 'order_lines':
      return { ...key, sku: `sku-${n % 50}-${version}`, qty: (version % 9) + 1 };
  }
}

interface Change {
  readonly topic: string;
  readonly partition: number;
  readonly key: string;
  readonly value: string | null;
}

interface FileLine {
  readonly table: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
}

/**
 * The file sink's lines. A kill can cut a line short (the sink appends a batch in several writes);
 * the next process appends after it, so a torn line is the torn part followed by a whole line,
 * whose start is found again. The torn record itself was not acknowledged and comes again.
 */
async function readFileSink(path: string): Promise<{ lines: FileLine[]; torn: number }> {
  const text = await readFile(path, 'utf8');
  const lines: FileLine[] = [];
  let torn = 0;
  for (const l of text.split('\n')) {
    if (!l) continue;
    try {
      lines.push(JSON.parse(l) as FileLine);
    } catch {
      torn++;
      const start = l.lastIndexOf('{"op":');
      if (start > 0) {
        try {
          lines.push(JSON.parse(l.slice(start)) as FileLine);
        } catch {
          // Only the torn part: its record is delivered again after the restart.
        }
      }
    }
  }
  return { lines, torn };
}

/** Every document of an index, by id (scrolls: more than a search page). */
async function esAll(stores: Stores, index: string): Promise<Map<string, Record<string, unknown>>> {
  await stores.es.indices.refresh({ index });
  const docs = new Map<string, Record<string, unknown>>();
  let res = await stores.es.search<Record<string, unknown>>({ index, scroll: '1m', size: 5_000, query: { match_all: {} } });
  while (res.hits.hits.length > 0) {
    for (const h of res.hits.hits) docs.set(h._id!, h._source!);
    res = await stores.es.scroll<Record<string, unknown>>({ scroll_id: res._scroll_id!, scroll: '1m' });
  }
  if (res._scroll_id) await stores.es.clearScroll({ scroll_id: res._scroll_id });
  return docs;
}

const strip = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('__cdc')));


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('chaos: kill -9 twenty times while replicating 50,000 changes', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  let dir: string;
  const id = uniqueName('chaos').replace(/-/g, '_');
  const pgSchema = `it_${id}`;
  const redisPrefix = `${id}:`;
  const esPrefix = id.replace(/_/g, '-');
  const prefix = esPrefix;
  const topics: Record<Table, string> = {
    customers: `${prefix}.public.customers`,
    orders: `${prefix}.public.orders`,
    order_lines: `${prefix}.public.order_lines`,
  };
  const dlqTopic = `${prefix}.dlq`;

  beforeAll(async () => {
    kafka = await kafkaFixture();
    stores = await openStores();
    dir = await mkdtemp(join(tmpdir(), 'cdc-chaos-'));
  });
  afterAll(async () => {
    await killAll();
    await kafka.admin.deleteTopics({ topics: [dlqTopic] }).catch(() => undefined);
    await kafka.close();
    await stores.cleanup({ pgSchemas: [pgSchema], redisPrefixes: [redisPrefix], esIndexPattern: `${esPrefix}-*` });
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'ends with every store equal to the last change per key, nothing skipped, offsets at the end',
    async () => {
      console.log(`chaos.test seed ${SEED} (CDC_CHAOS_SEED=${SEED} repeats this run)`);
      const r = seededRandom(SEED);
      for (const t of TABLES) await kafka.createTopic(topics[t], PARTITIONS);

      // --- the changes: c for a new (or deleted) key, u, and d followed by its tombstone, as Debezium sends them
      const expected: Record<Table, Map<string, RowOf | undefined>> = { customers: new Map(), orders: new Map(), order_lines: new Map() };
      const versions: Record<Table, Map<number, number>> = { customers: new Map(), orders: new Map(), order_lines: new Map() };
      const changes: Change[] = [];
      /** Offsets of the change records (not tombstones), by topic/partition. */
      const changeOffsets = new Map<string, bigint[]>();
      const nextOffset = new Map<string, bigint>();
      const append = (c: Change, isChange: boolean) => {
        const tp = `${c.topic}/${c.partition}`;
        const offset = nextOffset.get(tp) ?? 0n;
        nextOffset.set(tp, offset + 1n);
        if (isChange) {
          let list = changeOffsets.get(tp);
          if (!list) changeOffsets.set(tp, (list = []));
          list.push(offset);
        }
        changes.push(c);
      };
      let lsn = 100_000;
      let deletes = 0;
      for (let i = 0; i < EVENTS; i++) {
        const x = r.next();
        const table: Table = x < SHAPE.customers.share ? 'customers' : x < SHAPE.customers.share + SHAPE.orders.share ? 'orders' : 'order_lines';
        const shape = SHAPE[table];
        const n = r.next() < 0.3 ? r.int(0, shape.hot - 1) : r.int(0, shape.keys - 1);
        const key = keyOf(table, n);
        const text = keyText(table, key);
        const exists = expected[table].get(text) !== undefined;
        const op = !exists ? 'c' : r.next() < 0.08 ? 'd' : 'u';
        const version = (versions[table].get(n) ?? -1) + 1;
        versions[table].set(n, version);
        const after = op === 'd' ? null : rowOf(table, key, version, n);
        const env = envelope({ op, table, key, after, before: op === 'c' ? null : key, lsn: (lsn += 8), prefix, withSchema: table === 'customers' });
        const partition = n % PARTITIONS;
        append({ topic: topics[table], partition, key: env.key, value: env.value }, true);
        if (op === 'd') {
          deletes++;
          append({ topic: topics[table], partition, key: env.key, value: null }, false);
        }
        expected[table].set(text, after ?? undefined);
      }
      const t0 = Date.now();
      for (let i = 0; i < changes.length; i += 2_000) {
        const byTopic = new Map<string, { partition: number; key: string; value: string | null }[]>();
        for (const c of changes.slice(i, i + 2_000)) {
          let list = byTopic.get(c.topic);
          if (!list) byTopic.set(c.topic, (list = []));
          list.push({ partition: c.partition, key: c.key, value: c.value });
        }
        await kafka.producer.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      }
      const ends = new Map<string, bigint>();
      for (const t of TABLES) for (const [p, end] of await kafka.endOffsets(topics[t])) ends.set(`${topics[t]}/${p}`, end);
      for (const [tp, end] of ends) expect(end, tp).toBe(nextOffset.get(tp) ?? 0n);
      console.log(`chaos.test: produced ${EVENTS} changes (${deletes} deletes, each with its tombstone) in ${Date.now() - t0} ms`);

      // --- the router, killed and restarted
      const out = join(dir, 'out.jsonl');
      const group = uniqueName('chaos-group');
      const handlers = join(dir, 'paced-sink.mjs');
      await writeFile(handlers, PACED_SINK_MODULE);
      const config = await writeRouterConfig(dir, 'chaos', {
        kafka: {
          brokers: [BROKER],
          group_id: group,
          topics: Object.values(topics),
          // The broker's minimum: a killed member holds its partitions until its session expires.
          session_timeout_ms: 6_000,
          heartbeat_interval_ms: 500,
          rebalance_timeout_ms: 10_000,
        },
        sinks: {
          pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
          cache: { kind: 'redis', url: REDIS_URL, key_prefix: redisPrefix, mode: 'json' },
          search: { kind: 'elasticsearch', nodes: ES_URL, index_template: `${esPrefix}-{table}` },
          out: { kind: 'file', path: out },
          pace: { kind: 'paced', records_per_second: RECORDS_PER_SECOND },
        },
        handlers,
        routes: TABLES.map((t) => ({ table: `public.${t}`, sinks: ['pg', 'cache', 'search', 'out', 'pace'] })),
        max_batch_size: 500,
        retry: { initial_ms: 100, max_ms: 2_000 },
        dlq: { kind: 'kafka', topic: dlqTopic },
        metrics: { enabled: false },
        log: { level: 'info' },
      });

      /** Committed offsets by topic/partition (-1 where none), polled throughout: they must never go back. */
      const lastCommitted = new Map<string, bigint>();
      const backwards: string[] = [];
      const pollCommitted = async () => {
        let total = 0n;
        for (const t of TABLES) {
          for (const [p, c] of await kafka.committed(group, topics[t])) {
            const tp = `${topics[t]}/${p}`;
            const before = lastCommitted.get(tp) ?? -1n;
            if (c < before) backwards.push(`${tp}: ${before} -> ${c}`);
            if (c > before) lastCommitted.set(tp, c);
            if (c > 0n) total += c;
          }
        }
        return total;
      };
      const total = [...ends.values()].reduce((a, b) => a + b, 0n);
      const done = async () => (await pollCommitted()) === total;

      const started: RouterProcess[] = [];
      const start = () => {
        const router = startRouter(config, { name: `router #${started.length + 1}` });
        started.push(router);
        return router;
      };
      const current = () => started.slice(-1);
      const kills: { after: string; delayMs: number; lagAtKill: bigint }[] = [];
      const t1 = Date.now();
      for (let k = 0; k < KILLS; k++) {
        const router = start();
        await router.waitForLog((l) => l.msg === 'joined group', 60_000, 'joining the group');
        const afterCommit = r.next() < 0.5;
        if (afterCommit) {
          // From the moment the committed offsets move (the router is writing and committing).
          const base = await pollCommitted();
          await waitOrExplain(async () => (await pollCommitted()) > base || base === total, 30_000, 'the committed offsets to move', current);
        }
        const delayMs = r.int(500, 4_000);
        await sleep(delayMs);
        const lag = total - (await pollCommitted());
        expect(router.exit(), `${router.name} died on its own: ${tail(router)}`).toBeUndefined();
        await router.kill9();
        kills.push({ after: afterCommit ? 'commit moved' : 'joined', delayMs, lagAtKill: lag });
      }
      console.log(`chaos.test: ${KILLS} kills in ${Date.now() - t1} ms: ${kills.map((k) => `${k.after}+${k.delayMs}ms lag ${k.lagAtKill}`).join('; ')}`);

      // --- the last one runs to the end, then stops cleanly
      const last = start();
      const t2 = Date.now();
      // SIGTERM before the router has installed its handlers would just end the process.
      await last.waitForLog((l) => l.msg === 'joined group', 60_000, 'joining the group');
      await waitOrExplain(done, 180_000, 'the committed offsets to reach the end offsets', current);
      console.log(`chaos.test: the last router finished ${Date.now() - t2} ms after starting`);
      expect(await last.terminate(), tail(last)).toEqual({ code: 0, signal: null });
      await pollCommitted();

      // Most kills hit a router that still had work: otherwise the test proves little.
      expect(kills.filter((k) => k.lagAtKill > 0n).length, 'kills while records were still uncommitted').toBeGreaterThanOrEqual(KILLS / 2);
      expect(backwards, 'committed offsets that moved backwards').toEqual([]);
      for (const [tp, end] of ends) expect(lastCommitted.get(tp) ?? (end === 0n ? 0n : -1n), `committed ${tp}`).toBe(end);
      for (const router of started) {
        const trouble = router.logLines().filter((l) => /halted|crashed|dead-lettered/.test(l.msg ?? ''));
        expect(trouble.map((l) => l.msg), tail(router)).toEqual([]);
      }

      // No record skipped: every change offset is in the file sink, at least once.
      const { lines, torn } = await readFileSink(out);
      const seen = new Set(lines.map((l) => `${l.topic}/${l.partition}/${l.offset}`));
      const missing: string[] = [];
      let expectedLines = 0;
      for (const [tp, offsets] of changeOffsets) {
        expectedLines += offsets.length;
        for (const o of offsets) if (!seen.has(`${tp}/${o}`)) missing.push(`${tp}/${o}`);
      }
      console.log(`chaos.test: file sink: ${lines.length} lines for ${expectedLines} changes (${lines.length - seen.size} redelivered), ${torn} torn by a kill`);
      expect(missing.slice(0, 20), `${missing.length} change offsets missing from the file sink`).toEqual([]);
      expect(seen.size, 'distinct offsets in the file sink').toBe(expectedLines);

      // Every store: the last change per key, deleted keys absent.
      for (const t of TABLES) {
        const want = new Map([...expected[t]].filter((e): e is [string, RowOf] => e[1] !== undefined).map(([k, row]) => [k, canonical(row)]));
        const stored: Record<string, Map<string, string>> = {
          postgres: new Map((await stores.pgRows(pgSchema, t)).map((row) => [keyText(t, row), canonical(strip(row))])),
          redis: new Map([...(await stores.redisJson(`${redisPrefix}${t}:`)).values()].map((row) => [keyText(t, row), canonical(strip(row))])),
          elasticsearch: new Map([...(await esAll(stores, `${esPrefix}-${t}`))].map(([docId, doc]) => [docId, canonical(strip(doc))])),
        };
        for (const [store, got] of Object.entries(stored)) {
          const wrong = [...want].filter(([k, row]) => got.get(k) !== row).map(([k]) => k);
          const extra = [...got.keys()].filter((k) => !want.has(k));
          const example = wrong[0] === undefined ? '' : `, e.g. ${wrong[0]}: ${got.get(wrong[0])} instead of ${want.get(wrong[0])}`;
          expect(wrong.slice(0, 10), `${store} ${t}: ${wrong.length} rows missing or wrong${example}`).toEqual([]);
          expect(extra.slice(0, 10), `${store} ${t}: ${extra.length} rows that should not exist (deleted keys)`).toEqual([]);
        }
      }

      // Nothing was dead-lettered.
      const dlqEnds = await kafka.endOffsets(dlqTopic);
      expect([...dlqEnds.values()].reduce((a, b) => a + b, 0n), 'entries in the dead-letter queue').toBe(0n);
    },
    420_000,
  );
});
