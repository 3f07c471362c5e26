import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SinkError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import { UNAVAILABLE, type ChangeEvent, type Op, type Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { OK, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { StateStore } from '../../src/view/state-store.ts';
import { viewSchema } from '../../src/view/view-config.ts';
import { planView, type ViewPlan } from '../../src/view/view-plan.ts';
import { createViewSink } from '../../src/view/view-sink.ts';
import { uniqueName } from '../support/kafka.ts';
import { PG_URL } from '../support/stores.ts';

/**
 * The view runtime against real PostgreSQL state, one step at a time: the output is a sink that
 * records what it is given (and can be told to fail), so each test can say exactly which results
 * a batch must produce. End to end through Kafka and Debezium: views.test.ts.
 */

interface Recorder extends Sink {
  /** Latest result per key, as a sink with a stale-write guard would hold it. */
  readonly rows: Map<string, { version: bigint; row: Row | null }>;
  readonly writes: ChangeEvent[][];
  failNext: number;
}

function recorder(): Recorder {
  const rows = new Map<string, { version: bigint; row: Row | null }>();
  const writes: ChangeEvent[][] = [];
  const sink: Recorder = {
    name: 'out',
    kind: 'memory',
    rows,
    writes,
    failNext: 0,
    start: () => Promise.resolve(),
    close: () => Promise.resolve(),
    write(batch): Promise<readonly SinkResult[]> {
      if (sink.failNext > 0) {
        sink.failNext--;
        return Promise.reject(new SinkError('out', 'down for the test', { code: 'DOWN', retriable: true }));
      }
      writes.push([...batch]);
      for (const e of batch) {
        const key = JSON.stringify(e.key);
        const version = e.position.parts[0]!;
        const held = rows.get(key);
        if (held && held.version >= version) continue;
        rows.set(key, { version, row: e.after === null ? null : { ...e.after } });
      }
      return Promise.resolve(batch.map(() => OK));
    },
  };
  return sink;
}

let offset = 0;
function change(op: Op, key: Row, after: Row | null, lsn: number, options: { partition?: number; offset?: number; tsMs?: number } = {}): ChangeEvent {
  return {
    kind: 'change',
    op,
    table: { id: 'public.orders', db: undefined, schema: 'public', table: 'orders' },
    key: op === 't' ? null : key,
    before: null,
    after,
    source: { connector: 'postgresql', name: 't', db: 'shop', schema: 'public', table: 'orders', tsMs: options.tsMs ?? 1_700_000_000_000, snapshot: undefined, raw: {} },
    position: position('postgres', [BigInt(lsn)]),
    tsMs: options.tsMs ?? 1_700_000_000_000,
    kafka: { topic: 'orders-topic', partition: options.partition ?? 0, offset: String(options.offset ?? offset++), timestamp: 0 },
    columns: undefined,
  };
}

const live = (r: Recorder) =>
  Object.fromEntries([...r.rows].filter(([, v]) => v.row !== null).map(([k, v]) => [k, v.row]));

describe('view state in PostgreSQL', () => {
  const pool = new pg.Pool({ connectionString: PG_URL, max: 6 });
  const schema = uniqueName('view_state').replace(/-/g, '_').toLowerCase();
  const store = new StateStore(schema);
  const events = new RouterEvents();
  const logger = pino({ level: 'silent' });
  let n = 0;

  function makeView(config: Record<string, unknown>, output = recorder()): { sink: Sink; out: Recorder; plan: ViewPlan } {
    const plan = planView(`v${n++}`, viewSchema.parse({ ...config, to: { sink: 'out', table: 'public.results' } }));
    return { sink: createViewSink({ plan, pool, store, output, events, logger }), out: output, plan };
  }

  const SUM_BY_CUSTOMER = {
    from: { table: 'public.orders' },
    group_by: ['customer'],
    aggregations: { n: { fn: 'count' }, total: { fn: 'sum', column: 'amount' }, top: { fn: 'max', column: 'amount' } },
  };

  beforeAll(async () => {
    const client = await pool.connect();
    try {
      await store.ensureSchema(client);
    } finally {
      client.release();
    }
  });

  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  it('updates retract the stored image, moving a row between groups; deletes retract; an empty group is deleted', async () => {
    const { sink, out } = makeView(SUM_BY_CUSTOMER);
    await sink.start();
    await sink.write([
      change('c', { id: 1 }, { id: 1, customer: 'a', amount: '10.50' }, 100),
      change('c', { id: 2 }, { id: 2, customer: 'a', amount: '2.25' }, 101),
      change('c', { id: 3 }, { id: 3, customer: 'b', amount: '7.00' }, 102),
    ]);
    expect(live(out)).toEqual({
      '{"customer":"a"}': { customer: 'a', n: 2, total: '12.75', top: '10.50' },
      '{"customer":"b"}': { customer: 'b', n: 1, total: '7.00', top: '7.00' },
    });
    // REPLICA IDENTITY DEFAULT: no before image; the stored one says what to retract.
    await sink.write([change('u', { id: 1 }, { id: 1, customer: 'b', amount: '1.00' }, 103)]);
    expect(live(out)).toEqual({
      '{"customer":"a"}': { customer: 'a', n: 1, total: '2.25', top: '2.25' },
      '{"customer":"b"}': { customer: 'b', n: 2, total: '8.00', top: '7.00' },
    });
    await sink.write([change('d', { id: 2 }, null, 104)]);
    expect(live(out)).toEqual({ '{"customer":"b"}': { customer: 'b', n: 2, total: '8.00', top: '7.00' } });
    expect(out.rows.get('{"customer":"a"}')?.row).toBeNull();
    await sink.close();
  });

  it('a redelivered batch (same offsets) and a replayed older change (lower position) change nothing', async () => {
    const { sink, out } = makeView(SUM_BY_CUSTOMER);
    await sink.start();
    const batch = [change('c', { id: 1 }, { id: 1, customer: 'a', amount: '5' }, 200), change('u', { id: 1 }, { id: 1, customer: 'a', amount: '6' }, 201)];
    await sink.write(batch);
    const before = live(out);
    await sink.write(batch);
    // Same rows, new offsets (a replay from another group or a source re-snapshot): the positions are not newer.
    await sink.write(batch.map((e) => ({ ...e, kafka: { ...e.kafka, offset: String(offset++) } })));
    expect(live(out)).toEqual(before);
    expect(live(out)).toEqual({ '{"customer":"a"}': { customer: 'a', n: 1, total: '6', top: '6' } });
    await sink.close();
  });

  it('an unchanged TOASTed column is filled from the stored image; without one the record fails with stage view', async () => {
    const { sink, out } = makeView({
      from: { table: 'public.orders' },
      group_by: ['customer'],
      aggregations: { docs: { fn: 'count_distinct', column: 'doc' } },
    });
    await sink.start();
    await sink.write([
      change('c', { id: 1 }, { id: 1, customer: 'a', doc: 'long text one' }, 300),
      change('c', { id: 2 }, { id: 2, customer: 'a', doc: 'long text two' }, 301),
    ]);
    await sink.write([change('u', { id: 1 }, { id: 1, customer: 'b', doc: UNAVAILABLE }, 302)]);
    expect(live(out)).toEqual({ '{"customer":"a"}': { customer: 'a', docs: 1 }, '{"customer":"b"}': { customer: 'b', docs: 1 } });
    const results = await sink.write([change('u', { id: 9 }, { id: 9, customer: 'c', doc: UNAVAILABLE }, 303)]);
    expect(results[0]).toMatchObject({ ok: false, error: { stage: 'view', code: 'VIEW_UNAVAILABLE', retriable: false } });
    expect(live(out)).not.toHaveProperty('{"customer":"c"}');
    await sink.close();
  });

  it('a value an aggregation cannot take fails only its record, before anything changes', async () => {
    const { sink, out } = makeView(SUM_BY_CUSTOMER);
    await sink.start();
    const results = await sink.write([
      change('c', { id: 1 }, { id: 1, customer: 'a', amount: '4' }, 400),
      change('c', { id: 2 }, { id: 2, customer: 'a', amount: { nested: true } }, 401),
      change('c', { id: 3 }, { id: 3, customer: 'a', amount: '1' }, 402),
    ]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    expect(results[1]).toMatchObject({ ok: false, error: { stage: 'view', retriable: false } });
    expect(live(out)).toEqual({ '{"customer":"a"}': { customer: 'a', n: 2, total: '5', top: '4' } });
    await sink.close();
  });

  it('a truncate retracts every row stored before it; older changes arriving later stay out, newer rows stay', async () => {
    const { sink, out } = makeView(SUM_BY_CUSTOMER);
    await sink.start();
    await sink.write([
      change('c', { id: 1 }, { id: 1, customer: 'a', amount: '1' }, 500),
      change('c', { id: 2 }, { id: 2, customer: 'b', amount: '2' }, 501, { partition: 1 }),
      change('c', { id: 3 }, { id: 3, customer: 'b', amount: '3' }, 510, { partition: 1 }),
    ]);
    await sink.write([change('t', {}, null, 505), change('c', { id: 4 }, { id: 4, customer: 'a', amount: '4' }, 506)]);
    // A change older than the truncate, from another partition, read after it.
    await sink.write([change('u', { id: 2 }, { id: 2, customer: 'b', amount: '20' }, 503, { partition: 1 })]);
    expect(live(out)).toEqual({
      '{"customer":"a"}': { customer: 'a', n: 1, total: '4', top: '4' },
      '{"customer":"b"}': { customer: 'b', n: 1, total: '3', top: '3' },
    });
    await sink.close();
  });

  it('results committed while the output is down stay in the outbox and are delivered by the next write', async () => {
    const out = recorder();
    const { sink } = makeView(SUM_BY_CUSTOMER, out);
    await sink.start();
    out.failNext = 1;
    await expect(sink.write([change('c', { id: 1 }, { id: 1, customer: 'a', amount: '3' }, 600)])).rejects.toMatchObject({ retriable: true });
    expect(live(out)).toEqual({});
    // The pipeline retries the same batch: it is recognised as applied, and the outbox goes out.
    const again = await sink.write([change('c', { id: 1 }, { id: 1, customer: 'a', amount: '3' }, 600, { offset: offset - 1 })]);
    expect(again).toEqual([OK]);
    expect(live(out)).toEqual({ '{"customer":"a"}': { customer: 'a', n: 1, total: '3', top: '3' } });
    await sink.close();
  });

  it('two instances applying the same partition at once (a zombie after a rebalance) apply it once', async () => {
    const out = recorder();
    const a = makeView(SUM_BY_CUSTOMER, out);
    const b = createViewSink({ plan: a.plan, pool, store, output: out, events, logger });
    await a.sink.start();
    await b.start();
    const batch = Array.from({ length: 200 }, (_, i) => change('c', { id: i }, { id: i, customer: `c${i % 5}`, amount: String(i) }, 700 + i));
    await Promise.all([a.sink.write(batch), b.write(batch), a.sink.write(batch.slice(0, 50))]);
    const totals = Object.values(live(out)).map((r) => [r?.['customer'], r?.['n'], r?.['total']]);
    expect(totals.sort()).toEqual([
      ['c0', 40, String([...Array(40).keys()].reduce((s, k) => s + k * 5, 0))],
      ['c1', 40, String([...Array(40).keys()].reduce((s, k) => s + k * 5 + 1, 0))],
      ['c2', 40, String([...Array(40).keys()].reduce((s, k) => s + k * 5 + 2, 0))],
      ['c3', 40, String([...Array(40).keys()].reduce((s, k) => s + k * 5 + 3, 0))],
      ['c4', 40, String([...Array(40).keys()].reduce((s, k) => s + k * 5 + 4, 0))],
    ]);
    await a.sink.close();
    await b.close();
  });

  it('a stream counts every occurrence once, with no retractions', async () => {
    const { sink, out } = makeView({ from: { stream: 'public.orders' }, group_by: ['customer'], aggregations: { n: { fn: 'count' } } });
    await sink.start();
    const batch = [
      change('c', { id: 1 }, { id: 1, customer: 'a' }, 800),
      change('u', { id: 1 }, { id: 1, customer: 'a' }, 801),
      change('c', { id: 2 }, { id: 2, customer: 'b' }, 802),
    ];
    await sink.write(batch);
    // Redelivered (a crash before the Kafka commit): a stream has no positions to compare, the offsets say it.
    await sink.write(batch);
    await sink.write(batch.slice(1));
    expect(live(out)).toEqual({ '{"customer":"a"}': { customer: 'a', n: 2 }, '{"customer":"b"}': { customer: 'b', n: 1 } });
    await sink.close();
  });
});
