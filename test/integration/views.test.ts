import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSourceDatabase,
  ensureCdcServers,
  readTopics,
  registerConnector,
  uniqueSourceName,
  type SourceDatabase,
} from '../support/debezium-source.ts';
import { BROKER, kafkaFixture, type KafkaFixture } from '../support/kafka.ts';
import { routerChildren } from '../support/router-children.ts';
import { cli } from '../support/router-process.ts';
import { openStores, ES_URL, PG_URL, REDIS_URL, type Stores } from '../support/stores.ts';

/**
 * Views end to end on real Debezium: a workload of inserts, updates that move rows between groups
 * and between windows, primary-key changes, deletes, a truncate and unchanged TOASTed columns
 * (REPLICA IDENTITY DEFAULT) runs on a private source database; cdc-router keeps views of it in
 * PostgreSQL state and writes their results to PostgreSQL, Redis and Elasticsearch. After it drains,
 * every result equals the same aggregate computed by SQL on the source (GROUP BY, date_bin for
 * windows), row by row; also with the router killed (kill -9) three times mid-workload, and with
 * two instances in one group, one of them killed and restarted.
 */

const q = (id: string) => `"${id.replace(/"/g, '""')}"`;
const SESSION = "SET TimeZone = 'UTC'; SET extra_float_digits = 1";

const SCHEMA_SQL = `
  CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id int NOT NULL, category text NOT NULL, total numeric(12,2),
    qty int NOT NULL, created_at timestamptz NOT NULL, big text);
  -- Out of line and uncompressed: an update that leaves it alone sends Debezium's placeholder.
  ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
  CREATE TABLE clicks (id bigint PRIMARY KEY, page text NOT NULL, at timestamptz NOT NULL);
  CREATE TABLE marker (id int PRIMARY KEY, note text);
  CREATE FUNCTION big_of(n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT repeat(md5((n % 3)::text), 80) $$;
  INSERT INTO orders SELECT g, g % 7, (ARRAY['books','games','food','void'])[g % 4 + 1],
    CASE WHEN g % 11 = 0 THEN NULL ELSE round((g * 3.17) % 500, 2) END, g % 9 + 1,
    timestamptz '2026-01-01 00:00Z' + g * interval '7 minutes', big_of(g) FROM generate_series(1, 150) AS g;
  INSERT INTO clicks SELECT g, 'page-' || (g % 5), timestamptz '2026-01-01Z' + g * interval '1 second' FROM generate_series(1, 80) AS g;
`;

/** Phases of the live workload; the router may be killed between them. */
const PHASES: readonly (readonly string[])[] = [
  [
    `INSERT INTO orders SELECT g, g % 7, (ARRAY['books','games','food','void'])[g % 4 + 1], round((g * 1.13) % 300, 2), g % 5 + 1,
       timestamptz '2026-01-01 00:00Z' + g * interval '5 minutes', big_of(g) FROM generate_series(151, 400) AS g`,
    'UPDATE orders SET total = total + 1.05 WHERE id % 4 = 0',
    'UPDATE orders SET customer_id = (customer_id + 3) % 7 WHERE id % 5 = 0',
    "UPDATE orders SET created_at = created_at + interval '3 hours' WHERE id % 6 = 0",
    "UPDATE orders SET category = 'void' WHERE id % 17 = 0",
    "INSERT INTO clicks SELECT g, 'page-' || (g % 7), timestamptz '2026-01-02Z' + g * interval '1 second' FROM generate_series(81, 300) AS g",
    "INSERT INTO marker VALUES (1, 'phase 1')",
  ],
  [
    'DELETE FROM orders WHERE id % 10 = 3',
    'UPDATE orders SET id = id + 10000 WHERE id % 13 = 0',
    'UPDATE orders SET big = big_of(id + 1) WHERE id % 8 = 1',
    `BEGIN; UPDATE orders SET qty = qty + 2 WHERE customer_id = 2; DELETE FROM orders WHERE id = 20;
       INSERT INTO orders VALUES (20, 6, 'food', 999.99, 3, '2026-01-01 05:00Z', big_of(20)); COMMIT`,
    "INSERT INTO marker VALUES (2, 'phase 2')",
  ],
  [
    'TRUNCATE orders',
    `INSERT INTO orders SELECT g, g % 5, (ARRAY['books','games','food'])[g % 3 + 1], round((g * 2.71) % 800, 2), g % 4 + 1,
       timestamptz '2026-02-01 00:00Z' + g * interval '11 minutes', big_of(g) FROM generate_series(1000, 1180) AS g`,
    'UPDATE orders SET total = NULL WHERE id % 19 = 0',
    'UPDATE orders SET customer_id = customer_id + 1, total = total * 2 WHERE id % 7 = 0',
    "INSERT INTO marker VALUES (3, 'phase 3')",
  ],
  [
    "UPDATE orders SET created_at = created_at - interval '50 minutes', qty = qty * 3 WHERE id % 3 = 0",
    'DELETE FROM orders WHERE id % 9 = 0',
    'UPDATE orders SET id = id + 500 WHERE id % 10 = 1',
    "INSERT INTO clicks SELECT g, 'page-' || (g % 3), timestamptz '2026-01-03Z' + g * interval '1 second' FROM generate_series(301, 400) AS g",
    "INSERT INTO marker VALUES (4, 'phase 4')",
  ],
];

const BY_CUSTOMER = {
  from: { table: 'public.orders' },
  where: { field: 'category', not_equals: 'void' },
  group_by: ['customer_id'],
  aggregations: {
    n: { fn: 'count' },
    revenue: { fn: 'sum', column: 'total' },
    lo: { fn: 'min', column: 'total' },
    hi: { fn: 'max', column: 'total' },
    mean: { fn: 'avg', column: 'total' },
    sd: { fn: 'stddev_samp', column: 'qty' },
    vp: { fn: 'var_pop', column: 'qty' },
    bigs: { fn: 'count_distinct', column: 'big' },
  },
};

/** The results each view must hold, by SQL on the source: exact decimals (avg, stddev, variance too) as PostgreSQL prints them. */
const TRUTH = {
  by_customer: `SELECT customer_id, count(*) AS n, sum(total)::text AS revenue, min(total)::text AS lo, max(total)::text AS hi,
      avg(total)::text AS mean, stddev_samp(qty)::text AS sd, var_pop(qty)::text AS vp, count(DISTINCT big) AS bigs
    FROM orders WHERE category <> 'void' GROUP BY customer_id ORDER BY customer_id`,
  by_category_hour: `SELECT category, (extract(epoch FROM date_bin('1 hour', created_at, 'epoch')) * 1000)::bigint AS window_start,
      (extract(epoch FROM date_bin('1 hour', created_at, 'epoch') + interval '1 hour') * 1000)::bigint AS window_end,
      count(*) AS n, sum(total)::text AS revenue
    FROM orders GROUP BY 1, 2, 3 ORDER BY 1, 2`,
  by_category_hop: `SELECT category, (extract(epoch FROM w.s) * 1000)::bigint AS window_start,
      (extract(epoch FROM w.s + interval '2 hours') * 1000)::bigint AS window_end, count(*) AS n, max(qty) AS top_qty
    FROM orders, LATERAL (VALUES (date_bin('1 hour', created_at, 'epoch')), (date_bin('1 hour', created_at, 'epoch') - interval '1 hour')) AS w(s)
    GROUP BY 1, 2, 3 ORDER BY 1, 2`,
  clicks_per_page: 'SELECT page, count(*) AS n FROM clicks GROUP BY page ORDER BY page',
} as const;

const TARGET = {
  by_customer: 'SELECT customer_id, n, revenue::text, lo::text, hi::text, mean::text, sd::text, vp::text, bigs FROM $T ORDER BY customer_id',
  by_category_hour: 'SELECT category, window_start, window_end, n, revenue::text FROM $T ORDER BY 1, 2',
  by_category_hop: 'SELECT category, window_start, window_end, n, top_qty FROM $T ORDER BY 1, 2',
  clicks_per_page: 'SELECT page, n FROM $T ORDER BY page',
} as const;

type Rows = Record<string, unknown>[];

/** Rows as comparable values: integers as text (the drivers give numbers, bigints or text for them). */
function normalizeRows(rows: Rows): Rows {
  return rows.map((r) =>
    Object.fromEntries(
      Object.entries(r).map(([k, v]) => {
        if (typeof v === 'number' && !Number.isInteger(v)) return [k, Number(v.toPrecision(9))];
        if (typeof v === 'number' || typeof v === 'bigint') return [k, String(v)];
        return [k, v];
      }),
    ),
  );
}

describe('views end to end: Debezium → cdc-router views (PostgreSQL state) → PostgreSQL, Redis, Elasticsearch', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  let dir: string;
  const cleanups: (() => Promise<void>)[] = [];
  const routers = routerChildren({ keepChars: 40_000, tailChars: 8000, pollMs: 300, timeoutMs: 120_000 });

  beforeAll(async () => {
    await ensureCdcServers();
    kafka = await kafkaFixture();
    stores = await openStores();
    await stores.pg.query(SESSION);
    dir = await mkdtemp(join(tmpdir(), 'cdc-views-'));
  });

  async function cleanUp(): Promise<void> {
    await routers.killAll();
    for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) {
      await cleanup().catch((err: unknown) => console.warn('views cleanup failed', err));
    }
  }

  afterAll(async () => {
    await cleanUp();
    await stores?.close();
    await kafka?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function runScenario(options: { kills: number; instances: number; partitions: number }): Promise<void> {
    const id = uniqueSourceName('views');
    const pgSchema = `${id}_target`;
    const stateSchema = `${id}_state`;
    const redisPrefix = `${id}:`;
    const esPrefix = id.replace(/_/g, '-');
    const group = `${id}-router`;

    const db: SourceDatabase = await createSourceDatabase(id);
    cleanups.push(() => db.drop());
    await db.client.query(SESSION);
    await db.client.query(SCHEMA_SQL);
    const tables = ['orders', 'clicks', 'marker'];
    for (const t of tables) await kafka.createTopic(`${id}.public.${t}`, options.partitions);
    cleanups.push(() =>
      stores.cleanup({ pgSchemas: [pgSchema, stateSchema], redisPrefixes: [redisPrefix], esIndexPattern: `${esPrefix}-*` }),
    );
    cleanups.push(async () => {
      await kafka.admin.deleteTopics({ topics: [`__debezium-heartbeat.${id}`] }).catch(() => undefined);
    });
    const connector = await registerConnector({
      name: id,
      database: id,
      tables: tables.map((t) => `public.${t}`),
      config: { 'skipped.operations': 'none' },
    });
    cleanups.push(() => connector.drop());
    const topics = tables.map((t) => connector.topicOf(t));

    const configPath = join(dir, `${id}.json`);
    await writeFile(
      configPath,
      JSON.stringify({
        kafka: { brokers: [BROKER], group_id: group, topics, heartbeat_interval_ms: 1000, session_timeout_ms: 6000 },
        sinks: {
          pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
          cache: { kind: 'redis', url: REDIS_URL, key_prefix: redisPrefix, mode: 'json' },
          search: { kind: 'elasticsearch', nodes: ES_URL, index_template: `${esPrefix}-{table}` },
        },
        routes: [],
        state: { connection_string: PG_URL, schema: stateSchema },
        views: {
          by_customer: { ...BY_CUSTOMER, to: { sink: 'pg', table: 'public.by_customer' } },
          by_customer_redis: { ...BY_CUSTOMER, to: { sink: 'cache', table: 'public.by_customer' } },
          by_customer_es: { ...BY_CUSTOMER, to: { sink: 'search', table: 'public.by_customer' } },
          by_category_hour: {
            from: { table: 'public.orders' },
            group_by: ['category'],
            window: { tumbling: '1h' },
            event_time: 'created_at',
            aggregations: { n: { fn: 'count' }, revenue: { fn: 'sum', column: 'total' } },
            to: { sink: 'pg', table: 'public.by_category_hour' },
          },
          by_category_hop: {
            from: { table: 'public.orders' },
            group_by: ['category'],
            window: { hopping: { size: '2h', advance: '1h' } },
            event_time: 'created_at',
            aggregations: { n: { fn: 'count' }, top_qty: { fn: 'max', column: 'qty' } },
            to: { sink: 'pg', table: 'public.by_category_hop' },
          },
          clicks_per_page: {
            from: { stream: 'public.clicks' },
            group_by: ['page'],
            aggregations: { n: { fn: 'count' } },
            to: { sink: 'pg', table: 'public.clicks_per_page' },
          },
        },
        retry: { initial_ms: 100, max_ms: 2000 },
        metrics: { port: 0 },
        log: { level: 'warn' },
      }),
    );
    routers.resetLog();
    const running = Array.from({ length: options.instances }, (_, i) => routers.start(configPath, `r${i}`));

    const committedSum = async () => {
      let sum = 0n;
      for (const topic of topics) for (const off of (await kafka.committed(group, topic)).values()) if (off > 0n) sum += off;
      return sum;
    };
    for (const [i, phase] of PHASES.entries()) {
      const before = await committedSum();
      for (const sql of phase) await db.client.query(sql);
      if (i < options.kills) {
        await routers.waitFor(async () => (await committedSum()) > before, `the router to commit part of phase ${i + 1}`);
        // The last instance is the one killed and restarted; the others (if any) keep running.
        const victim = running.length - 1;
        await routers.killHard(running[victim]!);
        routers.note(`kill -9 of r${victim} after phase ${i + 1}`);
        running[victim] = routers.start(configPath, `r${victim}`);
      }
    }

    // Drained: the group's commits reach the end of every partition, and the outboxes are empty.
    await routers.waitFor(async () => ((await kafka.endOffsets(connector.topicOf('marker'))).size > 0 ? true : undefined), 'marker topic');
    await routers.waitFor(async () => {
      let markers = 0n;
      for (const e of (await kafka.endOffsets(connector.topicOf('marker'))).values()) markers += e;
      return markers >= BigInt(PHASES.length);
    }, 'the last marker in Kafka');
    await routers.waitFor(async () => {
      for (const topic of topics) {
        const end = await kafka.endOffsets(topic);
        const committed = await kafka.committed(group, topic);
        for (const [p, e] of end) if (e > 0n && committed.get(p) !== e) return false;
      }
      const outbox = await stores.pg.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${q(stateSchema)}.view_outbox`);
      return outbox.rows[0]?.n === '0';
    }, 'every view to apply and deliver everything');

    for (const [view, truthSql] of Object.entries(TRUTH) as [keyof typeof TRUTH, string][]) {
      const truth = normalizeRows((await db.client.query(truthSql)).rows as Rows);
      const target = normalizeRows((await stores.pg.query(TARGET[view].replace('$T', `${q(pgSchema)}.${q(view)}`))).rows as Rows);
      expect.soft(target, `PostgreSQL results of ${view}`).toEqual(truth);
      expect.soft(truth.length, `${view} has results`).toBeGreaterThan(0);
    }
    // Redis and Elasticsearch hold the same results as by_customer, under the group key.
    const truth = normalizeRows((await db.client.query(TRUTH.by_customer)).rows as Rows);
    const byKey = (rows: Rows) => new Map(rows.map((r) => [String(r['customer_id']), r]));
    const redis = await stores.redisJson(`${redisPrefix}by_customer:`);
    const redisRows = normalizeRows(
      [...redis.values()].map((v) => Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('__cdc')))),
    );
    expect.soft(byKey(redisRows), 'Redis results of by_customer').toEqual(byKey(truth));
    const docs = await stores.esDocs(`${esPrefix}-by_customer`);
    expect.soft(byKey(normalizeRows([...docs.values()])), 'Elasticsearch results of by_customer').toEqual(byKey(truth));

    // What Debezium wrote exercises what the test claims: snapshot reads, truncate, and updates whose
    // TOASTed column came as the placeholder (filled from the stored images).
    const ops = new Set<string>();
    let placeholders = 0;
    for (const r of await readTopics([connector.topicOf('orders')])) {
      if (r.value === null) continue;
      ops.add((JSON.parse(r.value) as { payload?: { op?: string } }).payload?.op ?? '?');
      if (r.value.includes('"__debezium_unavailable_value"')) placeholders += 1;
    }
    expect([...ops].sort().join('')).toBe('cdrtu');
    expect(placeholders).toBeGreaterThan(100);
    const counts = await db.client.query<{ n: string }>('SELECT count(*)::text AS n FROM orders');
    expect(Number(counts.rows[0]?.n)).toBeGreaterThan(100);
    // Every instance ran to the end: one that died (say at startup) left the work to the others, and
    // waiting for its exit below would never end.
    for (const r of running) {
      expect(r.exitCode === null && r.signalCode === null, `router ${r.pid} exited early (code ${r.exitCode})\n${routers.log().slice(-6000)}`).toBe(true);
    }
    // Stopped cleanly (SIGTERM: drain, commit, leave the group), so that the group is idle for `views reset`.
    for (const r of running) {
      const exited = new Promise((resolve) => r.once('exit', resolve));
      r.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    if (options.kills === 0) await checkListAndReset(configPath, pgSchema, db);
  }

  /** `views list` reports the state; `views reset` (group stopped) rebuilds a view whose results were damaged. */
  async function checkListAndReset(configPath: string, pgSchema: string, db: SourceDatabase): Promise<void> {
    const listed = await cli(['views', 'list', '-c', configPath, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const report = JSON.parse(listed.stdout) as Record<
      string,
      { groups: number; outbox: number; rows: number; watermark: string | null; offsets: { lag: number | null }[] }
    >;
    expect(report['by_customer']).toMatchObject({ outbox: 0, watermark: null });
    // Drained: every input partition applied to its end; a windowed view has a watermark from its clocks.
    expect(report['by_customer']?.offsets.map((o) => o.lag)).toEqual([0]);
    expect(report['by_category_hour']?.watermark).toMatch(/^2026-/);
    expect(report['by_customer']?.groups).toBe((await db.client.query(TRUTH.by_customer)).rows.length);
    // Damage: a result row lost and another one wrong. A reset deletes every result and rebuilds them.
    const target = `${q(pgSchema)}.by_customer`;
    await stores.pg.query(`DELETE FROM ${target} WHERE customer_id = (SELECT min(customer_id) FROM ${target})`);
    await stores.pg.query(`UPDATE ${target} SET n = -1, __cdc_position = '0' WHERE customer_id = (SELECT max(customer_id) FROM ${target})`);
    const reset = await cli(['views', 'reset', 'by_customer', '-c', configPath]);
    expect(reset.code, `${reset.stdout}\n${reset.stderr}`).toBe(0);
    const truth = normalizeRows((await db.client.query(TRUTH.by_customer)).rows as Rows);
    const rebuilt = normalizeRows((await stores.pg.query(TARGET.by_customer.replace('$T', target))).rows as Rows);
    expect(rebuilt).toEqual(truth);
  }

  it('every view equals SQL on the source after the workload (snapshot, updates across groups and windows, PK changes, deletes, truncate, TOAST)', async () => {
    try {
      await runScenario({ kills: 0, instances: 1, partitions: 1 });
    } finally {
      await cleanUp();
    }
  });

  it('every view still equals SQL on the source with the router killed (kill -9) three times mid-workload', async () => {
    try {
      await runScenario({ kills: 3, instances: 1, partitions: 1 });
    } finally {
      await cleanUp();
    }
  });

  it('two instances in one group on two partitions, one killed and restarted: every view equals SQL on the source', async () => {
    try {
      await runScenario({ kills: 2, instances: 2, partitions: 2 });
    } finally {
      await cleanUp();
    }
  });
});
