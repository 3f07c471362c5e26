import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPipeline, type Pipeline } from '../../src/compose/pipeline.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import type { RawRecord } from '../../src/model/change-event.ts';
import type { RecordFailure } from '../../src/pipeline/contracts.ts';
import { envelopeRecord } from '../../src/testing/envelope.ts';
import { viewResultPaths } from '../../src/view/build-views.ts';
import { uniqueName, waitUntil } from '../support/kafka.ts';
import { PG_URL } from '../support/stores.ts';

/**
 * Views whose output sink is PostgreSQL on the state's own database write their results inside the
 * state transaction: nothing goes through the outbox, and a retriable failure of the results' write
 * rolls the state back with it. A PostgreSQL sink on another database still takes the outbox. The
 * real pipeline, state and sinks; the truth is SQL over source tables that get the same changes.
 */

const q = (id: string) => `"${id}"`;
const HOUR = 3_600_000;

interface Order {
  id: number;
  customer_id: string;
  total: string;
}
type Change = ['orders', 'c' | 'u' | 'd', Order | { id: number }] | ['visits', 'c', { id: number; at: number }];

const TOTALS = { group_by: ['customer_id'], aggregations: { n: { fn: 'count' }, revenue: { fn: 'sum', column: 'total' } } };
const TOTALS_TRUTH = 'SELECT customer_id, count(*)::text AS n, sum(total)::text AS revenue FROM $S.orders GROUP BY 1 ORDER BY 1';
const HOURLY = {
  from: { stream: 'public.visits' },
  event_time: 'at',
  window: { tumbling: '1h' },
  emit: 'final',
  idle_timeout: '300ms',
  aggregations: { n: { fn: 'count' } },
};
const TOTALS_TARGET = 'SELECT customer_id, n::text, revenue::text FROM $T ORDER BY 1';

describe('views writing their PostgreSQL results in the state transaction', () => {
  const id = uniqueName('views_in_tx').replace(/-/g, '_').toLowerCase();
  const [source, target, state, otherDb] = [`${id}_source`, `${id}_target`, `${id}_state`, `${id}_db`];
  const otherUrl = PG_URL.replace(/\/[^/?]+(\?|$)/, `/${otherDb}$1`);
  const client = new pg.Client({ connectionString: PG_URL });
  const other = new pg.Client({ connectionString: otherUrl });
  const events = new RouterEvents();
  const failures: RecordFailure[] = [];
  const offsets = new Map<string, number>();
  let pipeline: Pipeline | undefined;
  let rawConfig: Record<string, unknown>;

  beforeAll(async () => {
    await client.connect();
    await client.query(`CREATE DATABASE ${q(otherDb)}`);
    await other.connect();
    await client.query(`CREATE SCHEMA ${q(source)}`);
    await client.query(`CREATE TABLE ${q(source)}.orders (id int PRIMARY KEY, customer_id text, total numeric(10,2))`);
    await client.query(`CREATE TABLE ${q(source)}.visits (id int PRIMARY KEY, at bigint, late boolean NOT NULL DEFAULT false)`);
    rawConfig = {
      kafka: { brokers: ['127.0.0.1:9092'], topics: ['test.public.orders', 'test.public.visits'] },
      sinks: {
        pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: target },
        // The same server and database by its separate fields: still the state's database.
        pg_fields: { kind: 'postgres', connection: { host: 'localhost', port: 5432, user: 'postgres', database: 'test' }, schema: `${target}_f` },
        elsewhere: { kind: 'postgres', connection: { connection_string: otherUrl }, schema: target },
      },
      routes: [],
      state: { connection_string: PG_URL, schema: state },
      retry: { initial_ms: 50, max_ms: 400 },
      views: {
        totals: { from: { table: 'public.orders' }, ...TOTALS, to: { sink: 'pg', table: 'public.totals' } },
        totals_fields: { from: { table: 'public.orders' }, ...TOTALS, to: { sink: 'pg_fields', table: 'public.totals' } },
        totals_elsewhere: { from: { table: 'public.orders' }, ...TOTALS, to: { sink: 'elsewhere', table: 'public.totals' } },
        hourly: { ...HOURLY, late: { sink: 'pg', table: 'public.hourly_late' }, to: { sink: 'pg', table: 'public.hourly' } },
        // Through the outbox, the late changes to the output's own sink.
        hourly_elsewhere: { ...HOURLY, late: { sink: 'elsewhere', table: 'public.hourly_late' }, to: { sink: 'elsewhere', table: 'public.hourly' } },
      },
      log: { level: 'warn' },
    };
    const config = await resolveConfig(rawConfig, { env: {} });
    pipeline = await buildPipeline(config, {
      logger: pino({ level: 'silent' }),
      events,
      onFailure: (failure) => {
        failures.push(failure);
        return Promise.resolve(true);
      },
    });
    // Every entry the outbox ever takes, by view (the views are started: the state tables exist).
    await client.query(`CREATE TABLE ${q(state)}.outbox_seen (view text NOT NULL)`);
    await client.query(`CREATE FUNCTION ${q(state)}.outbox_seen() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO ${q(state)}.outbox_seen VALUES (NEW.view); RETURN NEW; END $$`);
    await client.query(`CREATE TRIGGER seen AFTER INSERT ON ${q(state)}.view_outbox FOR EACH ROW EXECUTE FUNCTION ${q(state)}.outbox_seen()`);
  });

  afterAll(async () => {
    await pipeline?.close();
    for (const schema of [source, target, `${target}_f`, state]) await client.query(`DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`);
    await other.end();
    await client.query(`DROP DATABASE IF EXISTS ${q(otherDb)} WITH (FORCE)`);
    await client.end();
  });

  function record(change: Change, partition: number): RawRecord {
    const [table, op, row] = change;
    const r = envelopeRecord({ op, table, key: { id: row.id }, after: op === 'd' ? null : { ...row }, before: op === 'd' ? { id: row.id } : null });
    const offset = offsets.get(`${table}/${partition}`) ?? 0;
    offsets.set(`${table}/${partition}`, offset + 1);
    // Read to the end of its partition: a windowed view's idle partition stops holding the watermark.
    return { topic: r.topic, partition, offset: String(offset), highWatermark: String(offset + 1), timestamp: Date.now(), key: Buffer.from(r.key), value: Buffer.from(r.value), headers: {} };
  }

  /** One batch of one partition through the pipeline (nothing halted, committed to its end), and the same changes on the source tables. */
  async function apply(changes: readonly Change[], options: { partition?: number; late?: boolean } = {}): Promise<void> {
    const late = options.late ?? false;
    const records = changes.map((c) => record(c, options.partition ?? 0));
    let committed: bigint | undefined;
    const outcome = await pipeline!.processor.process(records, { signal: new AbortController().signal, progress: (o) => (committed = o) });
    expect(outcome.halted).toBeUndefined();
    expect(outcome.commitOffset ?? committed).toBe(BigInt(Number(records.at(-1)!.offset) + 1));
    for (const [table, op, row] of changes) {
      const t = `${q(source)}.${table}`;
      if (op === 'd') await client.query(`DELETE FROM ${t} WHERE id = $1`, [row.id]);
      else if (table === 'visits') await client.query(`INSERT INTO ${t} (id, at, late) VALUES ($1, $2, $3)`, [row.id, (row as { at: number }).at, late]);
      else {
        const o = row as Order;
        await client.query(
          `INSERT INTO ${t} VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, total = EXCLUDED.total`,
          [o.id, o.customer_id, o.total],
        );
      }
    }
  }

  const truth = async () => (await client.query(TOTALS_TRUTH.replaceAll('$S', q(source)))).rows;
  const results = async (db: pg.Client, schema: string) => (await db.query(TOTALS_TARGET.replace('$T', `${q(schema)}.totals`))).rows;
  const outboxSeen = async () =>
    Object.fromEntries((await client.query<{ view: string; n: string }>(`SELECT view, count(*)::text AS n FROM ${q(state)}.outbox_seen GROUP BY 1`)).rows.map((r) => [r.view, Number(r.n)]));
  /** The view's groups as its state holds them: rows counted per customer. */
  const groups = async (view: string) =>
    (
      await client.query(
        `SELECT gkey->>'customer_id' AS customer_id, rows::text AS n FROM ${q(state)}.view_groups WHERE view = $1 AND rows > 0 ORDER BY 1`,
        [view],
      )
    ).rows;
  const order = (n: number, customer: string, total: string): Order => ({ id: n, customer_id: customer, total });

  it('a PostgreSQL output on the state database takes the state transaction, one on another database the outbox; each equals SQL', async () => {
    const config = await resolveConfig(rawConfig, { env: {} });
    expect(viewResultPaths(config, pino({ level: 'silent' }))).toEqual({
      totals: { output: 'state transaction' },
      totals_fields: { output: 'state transaction' },
      totals_elsewhere: { output: 'outbox' },
      hourly: { output: 'state transaction', late: 'state transaction' },
      hourly_elsewhere: { output: 'outbox', late: 'outbox' },
    });
    await apply([
      ['orders', 'c', order(1, 'a', '10.50')],
      ['orders', 'c', order(2, 'a', '99.00')],
      ['orders', 'c', order(3, 'b', '7.25')],
      ['orders', 'c', order(4, 'c', '1.00')],
    ]);
    await apply([
      ['orders', 'u', order(1, 'b', '11.00')],
      ['orders', 'd', { id: 3 }],
      ['orders', 'c', order(5, 'd', '0.99')],
      ['orders', 'u', order(4, 'c', '2.00')],
    ]);
    const expected = await truth();
    expect(await results(client, target)).toEqual(expected);
    expect(await results(client, `${target}_f`)).toEqual(expected);
    // The outbox's results are delivered after the commit (by the write, or within 2 s by the relay).
    await waitUntil(async () => JSON.stringify(await results(other, target)) === JSON.stringify(expected), 10_000, 'the other database to have the results');
    const seen = await outboxSeen();
    expect(seen['totals_elsewhere']).toBeGreaterThan(0);
    expect(seen['totals']).toBeUndefined();
    expect(seen['totals_fields']).toBeUndefined();
    expect(failures).toEqual([]);
  });

  it('a retriable failure of the results write rolls the state back with it: after the retries nothing is counted twice or missing', async () => {
    // The output table refuses its next three writes with a serialization failure (a sequence: not rolled back with them).
    await client.query(`CREATE SEQUENCE ${q(target)}.refusals`);
    await client.query(`CREATE FUNCTION ${q(target)}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('${q(target)}.refusals') <= 3 THEN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '40001'; END IF; RETURN NULL; END $$`);
    await client.query(`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON ${q(target)}.totals FOR EACH STATEMENT EXECUTE FUNCTION ${q(target)}.refuse()`);
    const counted = { applied: 0, skipped: 0 };
    const off = events.on('view.applied', (e) => {
      if (e.view !== 'totals') return;
      counted.applied += e.applied;
      counted.skipped += e.skipped;
    });
    const batch: Change[] = [
      ['orders', 'u', order(2, 'c', '98.00')],
      ['orders', 'c', order(6, 'a', '5.55')],
      ['orders', 'd', { id: 5 }],
      ['orders', 'c', order(7, 'e', '3.10')],
    ];
    try {
      await apply(batch);
    } finally {
      off();
    }
    expect(Number((await client.query(`SELECT last_value FROM ${q(target)}.refusals`)).rows[0].last_value)).toBeGreaterThan(3);
    // Committed once, with its results: a state committed without them would have made the retry skip the batch.
    expect(counted).toEqual({ applied: batch.length, skipped: 0 });
    const expected = await truth();
    expect(await results(client, target)).toEqual(expected);
    expect(await groups('totals')).toEqual(expected.map((r: { customer_id: string; n: string }) => ({ customer_id: r.customer_id, n: r.n })));
    expect((await outboxSeen())['totals']).toBeUndefined();
    expect(failures).toEqual([]);
  });

  it('emit final: a window closed by the relay (idle input) and a late change, both in the state transaction', async () => {
    const visit = (n: number, at: number): Change => ['visits', 'c', { id: n, at }];
    const hourly = async (db = client) => {
      const exists = (await db.query(`SELECT to_regclass($1) AS t`, [`${q(target)}.hourly`])).rows[0].t !== null;
      return exists ? (await db.query(`SELECT window_start::text, n::int FROM ${q(target)}.hourly ORDER BY 1`)).rows : [];
    };
    // Partition 1 first: a partition never read is not in the watermark.
    await apply([visit(4, 0.3 * HOUR)], { partition: 1 });
    await apply([visit(1, 0.1 * HOUR), visit(2, 0.5 * HOUR), visit(3, 1.2 * HOUR)], { partition: 0 });
    // Partition 1 holds the watermark at 0.3 h: nothing closed by the writes.
    expect(await hourly()).toEqual([]);
    // Both idle (read to their ends, 300 ms without a change): the relay's tick moves the watermark to 1.2 h, closing [0, 1h).
    await waitUntil(async () => (await hourly()).length > 0, 15_000, 'the relay to close the first window');
    expect(await hourly()).toEqual([{ window_start: '0', n: 3 }]);
    // The view through the outbox has a relay of its own: wait for its tick too, or the change below is not late for it yet.
    await waitUntil(async () => (await hourly(other)).length > 0, 10_000, 'the other database to have the window');
    // A change for the closed window is late (grace 0): its side output, nothing counted.
    await apply([visit(5, 0.7 * HOUR)], { partition: 0, late: true });
    expect(await hourly()).toEqual([{ window_start: '0', n: 3 }]);
    const late = await client.query(`SELECT kafka_partition::int, kafka_offset::text, window_start::text FROM ${q(target)}.hourly_late`);
    expect(late.rows).toEqual([{ kafka_partition: 0, kafka_offset: '3', window_start: '0' }]);
    expect((await outboxSeen())['hourly']).toBeUndefined();
    // The same through the outbox to another database, output and late changes by one sink.
    expect(await hourly(other)).toEqual([{ window_start: '0', n: 3 }]);
    const lateThere = async () =>
      (await other.query(`SELECT kafka_partition::int, kafka_offset::text, window_start::text FROM ${q(target)}.hourly_late`).catch(() => ({ rows: [] }))).rows;
    await waitUntil(async () => (await lateThere()).length > 0, 10_000, 'the other database to have the late change');
    expect(await lateThere()).toEqual(late.rows);
    expect(failures).toEqual([]);
  });
});
