import { describe, expect, it } from 'vitest';
import { SinkError } from '../../src/errors.ts';
import { UNAVAILABLE, type ChangeEvent, type Op, type Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { OK, type Sink } from '../../src/sink/sink.ts';
import { viewSchema } from '../../src/view/view-config.ts';
import type { JsonValue } from '../../src/view/core/aggregation.ts';
import { ViewInputError } from '../../src/view/core/errors.ts';
import { planView, type ViewPlan } from '../../src/view/view-plan.ts';
import { createViewSink } from '../../src/view/view-sink.ts';
import { StateStore } from '../../src/view/state-store.ts';
import { waitUntil } from '../support/kafka.ts';
import { live, recorder, viewState, type Recorder } from '../support/view-state.ts';

/**
 * The view runtime against real PostgreSQL state, one step at a time: the output is a sink that
 * records what it is given (and can be told to fail), so each test can say exactly which results
 * a batch must produce. End to end through Kafka and Debezium: views.test.ts.
 */

let offset = 0;
function change(
  op: Op,
  key: Row,
  after: Row | null,
  lsn: number,
  options: { partition?: number; offset?: number; tsMs?: number; behind?: number } = {},
): ChangeEvent {
  const at = options.offset ?? offset++;
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
    // Read to the end of its partition unless `behind` records are still unread.
    kafka: { topic: 'orders-topic', partition: options.partition ?? 0, offset: String(at), timestamp: 0, highWatermark: String(at + 1 + (options.behind ?? 0)) },
    columns: undefined,
  };
}

describe('view state in PostgreSQL', () => {
  const { pool, schema, store, events, logger } = viewState('view_state', 6);
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

  it('a batch applied group by group equals one applied change by change: a group emptied and refilled, and an apply that throws fails just its record', async () => {
    const planned = makeView(SUM_BY_CUSTOMER).plan;
    // A sum whose subtract of 13 throws (validate() only tries adds): the batch falls back to one change at a time.
    const plan: ViewPlan = {
      ...planned,
      aggregations: planned.aggregations.map((a) =>
        a.name !== 'total'
          ? a
          : {
              ...a,
              aggregator: {
                ...a.aggregator,
                subtract: (st: JsonValue, v: unknown) => {
                  if (v === '13') throw new ViewInputError('VIEW_INPUT', 'thirteen cannot leave');
                  return a.aggregator.subtract(st, v);
                },
              },
            },
      ),
    };
    const out = recorder();
    const sink = createViewSink({ plan, pool, store, output: out, events, logger });
    await sink.start();
    await sink.write([
      change('c', { id: 1 }, { id: 1, customer: 'a', amount: '5' }, 500),
      change('c', { id: 2 }, { id: 2, customer: 'b', amount: '13' }, 501),
      change('c', { id: 3 }, { id: 3, customer: 'b', amount: '2' }, 502),
    ]);
    // a: its only row leaves and a new one comes, in one batch; then more changes to every group.
    const ok = await sink.write([
      change('d', { id: 1 }, null, 503),
      change('c', { id: 4 }, { id: 4, customer: 'a', amount: '7' }, 504),
      change('u', { id: 4 }, { id: 4, customer: 'a', amount: '8' }, 505),
      change('c', { id: 5 }, { id: 5, customer: 'b', amount: '1' }, 506),
    ]);
    expect(ok.map((r) => r.ok)).toEqual([true, true, true, true]);
    expect(live(out)).toEqual({
      '{"customer":"a"}': { customer: 'a', n: 1, total: '8', top: '8' },
      '{"customer":"b"}': { customer: 'b', n: 3, total: '16', top: '13' },
    });
    const results = await sink.write([
      change('u', { id: 3 }, { id: 3, customer: 'a', amount: '3' }, 507),
      change('u', { id: 2 }, { id: 2, customer: 'a', amount: '20' }, 508),
      change('c', { id: 6 }, { id: 6, customer: 'b', amount: '4' }, 509),
    ]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    expect(results[1]).toMatchObject({ ok: false, error: { stage: 'view', message: expect.stringMatching(/thirteen cannot leave/) } });
    // Row 2 keeps its image (13 in b), as if its change never came.
    expect(live(out)).toEqual({
      '{"customer":"a"}': { customer: 'a', n: 2, total: '11', top: '8' },
      '{"customer":"b"}': { customer: 'b', n: 3, total: '18', top: '13' },
    });
    await sink.write([change('u', { id: 2 }, { id: 2, customer: 'b', amount: '6' }, 510)]).catch(() => undefined);
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

  it("delivered results leave the outbox with the next write's transaction (kept when it rolls back) or at close, each delivered once", async () => {
    const out = recorder();
    const plan = planView(`v${n++}`, viewSchema.parse({ ...SUM_BY_CUSTOMER, to: { sink: 'out', table: 'public.results' } }));
    // No relay tick during the test: it would delete delivered entries itself.
    const sink = createViewSink({ plan, pool, store, output: out, events, logger, relayIntervalMs: 600_000 });
    const outbox = async () =>
      (await pool.query<{ id: string }>(`SELECT id::text FROM "${schema}".view_outbox WHERE view = $1 ORDER BY id`, [plan.name])).rows.map((r) => r.id);
    await sink.start();
    expect(await outbox()).toEqual([]);
    // The start's own look for leftovers (one claiming transaction) must be over: had it claimed the
    // next write's entry, that entry would be delivered twice, which this test counts.
    await new Promise((r) => setTimeout(r, 1_000));
    await sink.write([change('c', { id: 1 }, { id: 1, customer: 'a', amount: '3' }, 700)]);
    const first = await outbox();
    // Delivered, its deletion left to the next transaction.
    expect(first).toHaveLength(1);
    expect(out.writes).toHaveLength(1);
    // A write whose transaction rolls back (an apply error of the whole batch: a race lost five times
    // is not reachable here, so the state is made to refuse the transaction) keeps the entry.
    await pool.query(`ALTER TABLE "${schema}".view_groups ADD CONSTRAINT refuse_b CHECK (gkey->>'customer' <> 'b') NOT VALID`);
    try {
      await expect(sink.write([change('c', { id: 2 }, { id: 2, customer: 'b', amount: '4' }, 701)])).rejects.toThrow(/refuse_b/);
    } finally {
      await pool.query(`ALTER TABLE "${schema}".view_groups DROP CONSTRAINT refuse_b`);
    }
    expect(await outbox()).toEqual(first);
    await sink.write([change('c', { id: 2 }, { id: 2, customer: 'b', amount: '4' }, 701, { offset: offset - 1 })]);
    const second = await outbox();
    expect(second).toHaveLength(1);
    expect(second[0]).not.toBe(first[0]);
    await sink.close();
    expect(await outbox()).toEqual([]);
    // Each result went out once: no claim delivered the kept entries again.
    expect(out.writes.flat().map((e) => JSON.stringify(e.key))).toEqual(['{"customer":"a"}', '{"customer":"b"}']);
    expect(live(out)).toEqual({
      '{"customer":"a"}': { customer: 'a', n: 1, total: '3', top: '3' },
      '{"customer":"b"}': { customer: 'b', n: 1, total: '4', top: '4' },
    });
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

  const FINAL_WINDOWS = {
    from: { table: 'public.orders' },
    window: { tumbling: '10s' },
    event_time: 'at',
    grace: '5s',
    emit: 'final',
    aggregations: { n: { fn: 'count' } },
  };
  const win = (start: number) => JSON.stringify({ window_start: start, window_end: start + 10_000 });

  it('emit final: a window is written once the watermark passes its end, corrected within grace; later changes are late', async () => {
    const { sink, out } = makeView(FINAL_WINDOWS);
    await sink.start();
    await sink.write([change('c', { id: 1 }, { id: 1, at: 1_000 }, 900), change('c', { id: 2 }, { id: 2, at: 2_000 }, 901)]);
    expect(live(out)).toEqual({});
    await sink.write([change('c', { id: 3 }, { id: 3, at: 12_000 }, 902)]);
    expect(live(out)).toEqual({ [win(0)]: { window_start: 0, window_end: 10_000, n: 2 } });
    // Within grace (watermark 12 s < end 10 s + grace 5 s): a correction.
    await sink.write([change('c', { id: 4 }, { id: 4, at: 9_000 }, 903)]);
    expect(live(out)).toEqual({ [win(0)]: { window_start: 0, window_end: 10_000, n: 3 } });
    await sink.write([change('c', { id: 5 }, { id: 5, at: 21_000 }, 904)]);
    expect(live(out)).toEqual({
      [win(0)]: { window_start: 0, window_end: 10_000, n: 3 },
      [win(10_000)]: { window_start: 10_000, window_end: 20_000, n: 1 },
    });
    // Past end + grace: late, whether it adds to the closed window or retracts from it; nothing changes.
    const late = await sink.write([
      change('c', { id: 6 }, { id: 6, at: 5_000 }, 905),
      change('d', { id: 1 }, null, 906),
      change('c', { id: 7 }, { id: 7, at: 22_000 }, 907),
    ]);
    expect(late.map((r) => r.ok)).toEqual([false, false, true]);
    expect(late[0]).toMatchObject({ ok: false, error: { stage: 'view', code: 'VIEW_LATE', retriable: false } });
    expect(late[0]?.ok === false && late[0].error.message).toMatch(/too late for tumbling window \[1970-01-01T00:00:00\.000Z.*the watermark 1970-01-01T00:00:21\.000Z/);
    expect(live(out)).toEqual({
      [win(0)]: { window_start: 0, window_end: 10_000, n: 3 },
      [win(10_000)]: { window_start: 10_000, window_end: 20_000, n: 1 },
    });
    await sink.close();
  });

  it('a partition read to its end and idle does not hold windows open; one still behind does', async () => {
    const { sink, out } = makeView({ ...FINAL_WINDOWS, idle_timeout: '300ms' });
    await sink.start();
    await sink.write([
      change('c', { id: 1 }, { id: 1, at: 1_000 }, 950, { partition: 0 }),
      change('c', { id: 2 }, { id: 2, at: 500 }, 951, { partition: 1 }),
      change('c', { id: 3 }, { id: 3, at: 25_000 }, 952, { partition: 0 }),
    ]);
    // Partition 1 is at 500 ms: the watermark stays there.
    expect(live(out)).toEqual({});
    await new Promise((r) => setTimeout(r, 400));
    // Partition 1 has been idle (and read to its end) for longer than idle_timeout: partition 0 alone moves the watermark.
    await sink.write([change('c', { id: 4 }, { id: 4, at: 26_000 }, 953, { partition: 0 })]);
    expect(live(out)).toEqual({ [win(0)]: { window_start: 0, window_end: 10_000, n: 2 } });

    const behind = makeView({ ...FINAL_WINDOWS, idle_timeout: '300ms' });
    await behind.sink.start();
    await behind.sink.write([
      change('c', { id: 1 }, { id: 1, at: 1_000 }, 960, { partition: 0 }),
      change('c', { id: 2 }, { id: 2, at: 500 }, 961, { partition: 1, behind: 10 }),
      change('c', { id: 3 }, { id: 3, at: 25_000 }, 962, { partition: 0 }),
    ]);
    await new Promise((r) => setTimeout(r, 400));
    await behind.sink.write([change('c', { id: 4 }, { id: 4, at: 26_000 }, 963, { partition: 0 })]);
    // Partition 1 still has unread records: a timer alone never makes it idle (its changes would be dropped as late).
    expect(live(behind.out)).toEqual({});
    await sink.close();
    await behind.sink.close();
  });

  it('when every partition is idle, the relay closes the last windows without new input', async () => {
    const { sink, out } = makeView({ ...FINAL_WINDOWS, idle_timeout: '300ms' });
    await sink.start();
    await sink.write([
      change('c', { id: 1 }, { id: 1, at: 1_000 }, 970, { partition: 0 }),
      change('c', { id: 2 }, { id: 2, at: 14_000 }, 971, { partition: 0 }),
      change('c', { id: 3 }, { id: 3, at: 500 }, 972, { partition: 1 }),
    ]);
    // Partition 1 holds the watermark at 500 ms until both are idle: then it moves to 14 s and the window closes.
    expect(live(out)).toEqual({});
    await waitUntil(() => Object.keys(live(out)).length > 0, 10_000, 'the relay to close the window');
    expect(live(out)).toEqual({ [win(0)]: { window_start: 0, window_end: 10_000, n: 2 } });
    await sink.close();
  });

  it('a group emptied by one transaction while another waits to add to it loses nothing', async () => {
    const out = recorder();
    const a = makeView(SUM_BY_CUSTOMER, out);
    const b = createViewSink({ plan: a.plan, pool, store, output: out, events, logger });
    await a.sink.start();
    await b.start();
    await a.sink.write([change('c', { id: 0 }, { id: 0, customer: 'g', amount: '1' }, 10_000, { partition: 0 })]);
    // Each round: the group's only row leaves (partition 0) while a new one arrives (partition 1), at once.
    for (let i = 1; i <= 40; i++) {
      const results = await Promise.all([
        a.sink.write([change('d', { id: i - 1 }, null, 10_000 + 2 * i, { partition: 0 })]),
        b.write([change('c', { id: i }, { id: i, customer: 'g', amount: '1' }, 10_001 + 2 * i, { partition: 1 })]),
      ]);
      expect(results.flat(), `round ${i}`).toEqual([OK, OK]);
    }
    const groups = await pool.query<{ rows: string }>(`SELECT rows::text FROM "${schema}".view_groups WHERE view = $1`, [a.plan.name]);
    expect(groups.rows.map((r) => r.rows)).toEqual(['1']);
    expect(live(out)).toEqual({ '{"customer":"g"}': { customer: 'g', n: 1, total: '1', top: '1' } });
    await a.sink.close();
    await b.close();
  });

  it('a group state (and an offset row) kept by one instance is read again once another instance, a rolled-back transaction or a reset changed it', async () => {
    const out = recorder();
    const a = makeView(SUM_BY_CUSTOMER, out);
    // Another process: a store, and so a group cache, of its own on the same state.
    const b = createViewSink({ plan: a.plan, pool, store: new StateStore(schema), output: out, events, logger });
    let failWrites = 0;
    const failing = {
      database: 'test',
      write: (_client: unknown, batch: readonly ChangeEvent[]) =>
        failWrites-- > 0 ? Promise.reject(new SinkError('out', 'down for the test', { code: 'DOWN', retriable: true })) : out.write(batch),
    };
    const c = createViewSink({ plan: a.plan, pool, store, output: out, events, logger, inState: { output: failing } });
    await Promise.all([a.sink.start(), b.start(), c.start()]);
    const amounts = new Map<number, { customer: string; amount: number }>();
    const expected = () => {
      const by = new Map<string, { customer: string; n: number; total: number; top: number }>();
      for (const { customer, amount } of amounts.values()) {
        const g = by.get(customer) ?? { customer, n: 0, total: 0, top: -Infinity };
        by.set(customer, { customer, n: g.n + 1, total: g.total + amount, top: Math.max(g.top, amount) });
      }
      return Object.fromEntries([...by.values()].map((g) => [JSON.stringify({ customer: g.customer }), { ...g, total: String(g.total), top: String(g.top) }]));
    };
    let lsn = 30_000;
    const round = (partition: number, ids: readonly number[], amount: (id: number) => number) =>
      ids.map((id) => {
        const row = { customer: `k${id % 3}`, amount: amount(id) };
        const op = amounts.has(id) ? 'u' : 'c';
        amounts.set(id, row);
        return change(op, { id }, { id, customer: row.customer, amount: String(row.amount) }, lsn++, { partition });
      });
    // Alternating instances on the same groups: each one's cached state is outdated by the other's write.
    for (let i = 0; i < 6; i++) {
      const writer = i % 2 === 0 ? a.sink : b;
      await writer.write(round(i % 2, [i * 10, i * 10 + 1, i * 10 + 2, i % 2], (id) => id + i * 100));
      expect(live(out), `round ${i}`).toEqual(expected());
    }
    // A transaction that saved groups and then rolled back: its states must not be taken as stored.
    failWrites = 1;
    const retried = round(0, [3, 4, 5], (id) => id + 1_000);
    await expect(c.write(retried)).rejects.toThrow(/down for the test/);
    await c.write(retried);
    await a.sink.write(round(0, [3, 6], (id) => id + 2_000));
    expect(live(out)).toEqual(expected());
    // A reset by the other process deletes the rows a cached state belongs to.
    const client = await pool.connect();
    try {
      await new StateStore(schema).resetView(client, a.plan.name, a.plan.keyColumns);
    } finally {
      client.release();
    }
    amounts.clear();
    // Partition 0 again: its offset row, seen by this process before, is gone too.
    await a.sink.write(round(0, [100, 101], (id) => id));
    expect(Object.fromEntries(Object.entries(live(out)).filter(([k]) => k !== JSON.stringify({ customer: 'k0' })))).toEqual(expected());
    await Promise.all([a.sink.close(), b.close(), c.close()]);
  });

  it('a row new to two transactions at once (one primary key on two partitions) is counted once', async () => {
    const out = recorder();
    const a = makeView(SUM_BY_CUSTOMER, out);
    const b = createViewSink({ plan: a.plan, pool, store, output: out, events, logger });
    await a.sink.start();
    await b.start();
    // Each round: a create of a new key on partition 0 and an update of the same key on partition 1,
    // written at once: whichever transaction stores the key second read it as absent and must start over.
    for (let i = 0; i < 30; i++) {
      const results = await Promise.all([
        a.sink.write([change('c', { id: 1000 + i }, { id: 1000 + i, customer: 'r', amount: '1' }, 20_000 + 2 * i, { partition: 0 })]),
        b.write([change('u', { id: 1000 + i }, { id: 1000 + i, customer: 'r', amount: '2' }, 20_001 + 2 * i, { partition: 1 })]),
      ]);
      expect(results.flat(), `round ${i}`).toEqual([OK, OK]);
    }
    const rows = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${schema}".view_rows WHERE view = $1`, [a.plan.name]);
    expect(rows.rows[0]?.n).toBe('30');
    expect(live(out)).toEqual({ '{"customer":"r"}': { customer: 'r', n: 30, total: '60', top: '2' } });
    await a.sink.close();
    await b.close();
  });

  it('state written by an earlier version (jsonb columns, kept images in view_rows, one result per outbox row) is upgraded in place', async () => {
    const old = `${schema}_old`;
    const q = (t: string) => `"${old}".${t}`;
    await pool.query(`CREATE SCHEMA "${old}"`);
    try {
      await pool.query(`CREATE TABLE ${q('view_rows')} (view text NOT NULL, pk text NOT NULL, pos text COLLATE "C", image jsonb, moved jsonb, PRIMARY KEY (view, pk))`);
      await pool.query(`CREATE INDEX view_rows_moved ON ${q('view_rows')} (view, pos) WHERE moved IS NOT NULL`);
      await pool.query(`CREATE TABLE ${q('view_groups')} (view text NOT NULL, gid text NOT NULL, gkey jsonb NOT NULL, rows bigint NOT NULL, state jsonb NOT NULL, PRIMARY KEY (view, gid))`);
      await pool.query(`CREATE TABLE ${q('view_outbox')} (id bigserial PRIMARY KEY, view text NOT NULL, payload jsonb NOT NULL)`);
      await pool.query(`INSERT INTO ${q('view_rows')} VALUES ('v', '1', 'p1', NULL, '{"amount": "5"}'), ('v', '2', 'p2', '{"amount": "7"}', NULL)`);
      await pool.query(`INSERT INTO ${q('view_groups')} VALUES ('v', 'g', '{"customer": "a"}', 1, '{"n": 1}')`);
      await pool.query(`INSERT INTO ${q('view_outbox')} (view, payload) VALUES ('v', '{"op": "c", "key": {"customer": "a"}, "after": {"customer": "a", "n": 1}, "version": "9", "tsMs": 1}')`);
      const upgraded = new StateStore(old);
      const client = await pool.connect();
      try {
        await upgraded.ensureSchema(client);
        await client.query('BEGIN');
        expect(await upgraded.movedImage(client, 'v', 'p1')).toEqual({ amount: '5' });
        expect((await upgraded.lockRowsOf(client, 'v', ['1', '2'], [])).rows).toEqual(
          new Map([
            ['1', { pos: 'p1', image: null }],
            ['2', { pos: 'p2', image: { amount: '7' } }],
          ]),
        );
        expect((await upgraded.lockGroups(client, 'v', ['g'])).get('g')?.state).toEqual({ n: 1 });
        const claimed = await upgraded.claimOutbox(client, 'v', 100);
        expect(claimed.entries.map((e) => e.results)).toEqual([[{ op: 'c', key: { customer: 'a' }, after: { customer: 'a', n: 1 }, version: '9', tsMs: 1 }]]);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      const types = await pool.query<{ c: string; t: string }>(
        `SELECT table_name || '.' || column_name AS c, data_type AS t FROM information_schema.columns
         WHERE table_schema = $1 AND column_name IN ('image', 'moved', 'state', 'payload') AND table_name IN ('view_rows', 'view_groups', 'view_outbox', 'view_moved') ORDER BY 1`,
        [old],
      );
      expect(types.rows).toEqual([
        { c: 'view_groups.state', t: 'text' },
        { c: 'view_moved.image', t: 'text' },
        { c: 'view_outbox.payload', t: 'text' },
        { c: 'view_rows.image', t: 'text' },
      ]);
    } finally {
      await pool.query(`DROP SCHEMA "${old}" CASCADE`);
    }
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
