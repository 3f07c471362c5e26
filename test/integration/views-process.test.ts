import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import { fromStream, fromTable, mapState, valueState } from '../../src/index.ts';
import type { ChangeEvent, Op, Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { startService, type Service } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { planView, type ViewDefinition } from '../../src/view/view-plan.ts';
import { createViewSink } from '../../src/view/view-sink.ts';
import handlers, { CLICK_TTL_MS, type Click } from '../fixtures/handlers/views-process.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { PG_URL } from '../support/stores.ts';
import { live, recorder, viewState } from '../support/view-state.ts';

/**
 * `process` views with keyed state in PostgreSQL. Each result is compared with a model of the
 * processor written here independently (plain maps, the TTL rule spelled out): through a view sink
 * step by step (redelivery, retractions on a table, wall-clock TTL), and through real Kafka with the
 * router stopped mid-stream, its group rewound (every record delivered again) and started again.
 */

interface Entry {
  v: number | string;
  e: number;
}

/** The click processor of the fixture, as a model: stream time = highest event time; an entry lives while e > stream time. */
class ClickModel {
  streamTime = Number.NEGATIVE_INFINITY;
  readonly users = new Map<string, { clicks?: Entry; recent: Entry[]; pages: Map<string, Entry> }>();
  readonly results = new Map<string, Row>();
  readonly total = new Map<string, number>();

  apply(click: Click, timeMs: number): void {
    this.streamTime = Math.max(this.streamTime, timeMs);
    const now = this.streamTime;
    const alive = (e: Entry | undefined): e is Entry => e !== undefined && e.e > now;
    const u = this.users.get(click.user) ?? { recent: [], pages: new Map<string, Entry>() };
    this.users.set(click.user, u);
    const clicks = (alive(u.clicks) ? Number(u.clicks.v) : 0) + 1;
    u.clicks = { v: clicks, e: now + CLICK_TTL_MS };
    u.recent.push({ v: click.page, e: now + CLICK_TTL_MS });
    const p = u.pages.get(click.page);
    u.pages.set(click.page, { v: (alive(p) ? Number(p.v) : 0) + 1, e: now + CLICK_TTL_MS });
    const pages = [...u.pages.values()].filter(alive).length;
    this.results.set(click.user, { user: click.user, clicks, pages, recent: u.recent.filter(alive).map((e) => e.v).join(',') });
    this.total.set(click.user, (this.total.get(click.user) ?? 0) + 1);
  }

  /** A user's entries alive at the final stream time, in the stored layout. */
  liveState(user: string): Record<string, unknown> {
    const u = this.users.get(user)!;
    const alive = (e: Entry | undefined): e is Entry => e !== undefined && e.e > this.streamTime;
    const out: Record<string, unknown> = {};
    if (alive(u.clicks)) out['value'] = { clicks: u.clicks };
    const recent = u.recent.filter(alive);
    if (recent.length > 0) out['list'] = { recent };
    const pages = [...u.pages].filter(([, e]) => alive(e));
    if (pages.length > 0) out['map'] = { pages: Object.fromEntries(pages) };
    return out;
  }
}

/** 60 clicks of 4 users, a second apart with two 12 s pauses (longer than the TTL); the last 12 from u0 and u1 only. */
function workload(): { click: Click; timeMs: number }[] {
  const base = 1_714_557_600_000;
  let t = base;
  let seed = 7;
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648);
  return Array.from({ length: 60 }, (_, i) => {
    t += i === 20 || i === 40 ? 12_000 : 1_000;
    const user = `u${next() % (i >= 48 ? 2 : 4)}`;
    return { click: { id: i + 1, user, page: `p${next() % 5}` }, timeMs: t };
  });
}

let offset = 0;
let lsn = 1_000;
/** The orders table of the table-view tests. */
interface Order {
  id: number;
  customer: string;
  amount: number;
}

function change(op: Op, table: string, key: Row, after: Row | null, tsMs: number): ChangeEvent {
  const at = offset++;
  return {
    kind: 'change',
    op,
    table: { id: `public.${table}`, db: undefined, schema: 'public', table },
    key: op === 't' ? null : key,
    before: null,
    after,
    source: { connector: 'postgresql', name: 't', db: 'shop', schema: 'public', table, tsMs, snapshot: undefined, raw: {} },
    position: position('postgres', [BigInt((lsn += 8))]),
    tsMs,
    kafka: { topic: `${table}-topic`, partition: 0, offset: String(at), timestamp: 0, highWatermark: String(at + 1) },
    columns: undefined,
  };
}

describe('process views with keyed state', () => {
  const { pool, schema, store, events, logger } = viewState('view_process', 4);
  let n = 0;

  function makeView(definition: ViewDefinition) {
    const plan = planView(`p${n++}`, definition);
    const out = recorder();
    return { plan, out, sink: createViewSink({ plan, pool, store, output: out, events, logger }) };
  }

  async function storedState(view: string): Promise<Map<string, { state: Record<string, unknown>; expires: string | null }>> {
    const res = await pool.query<{ gkey: Row; state: Record<string, unknown>; expires_at: string | null }>(
      `SELECT gkey, state, expires_at::text FROM "${schema}".view_keyed_state WHERE view = $1`,
      [view],
    );
    return new Map(res.rows.map((r) => [String(r.gkey['user'] ?? r.gkey['customer']), { state: r.state, expires: r.expires_at }]));
  }

  it('value, list and map state with an event-time TTL: results equal the model; a redelivered batch is applied zero times more', async () => {
    const { plan, out, sink } = makeView(handlers.views!['click_stats']!.definition);
    await sink.start();
    const model = new ClickModel();
    const clicks = workload();
    for (let i = 0; i < clicks.length; i += 7) {
      const batch = clicks.slice(i, i + 7).map(({ click, timeMs }) => change('c', 'clicks', { id: click.id }, { ...click }, timeMs));
      await sink.write(batch);
      for (const { click, timeMs } of clicks.slice(i, i + 7)) model.apply(click, timeMs);
      // Delivered again (a crash before the Kafka commit): the offsets stored with the state say it is applied.
      if (i === 14 || i === 42) await sink.write(batch);
    }
    expect(live(out)).toEqual(Object.fromEntries([...model.results].map(([u, r]) => [JSON.stringify({ user: u }), r])));
    // Expiry mattered: some user's count started again after a pause longer than the TTL.
    expect([...model.results].some(([u, r]) => Number(r['clicks']) < model.total.get(u)!)).toBe(true);

    // Stored: each user's live entries only; users whose every entry expired keep their result and no state.
    const stored = await storedState(plan.name);
    const expired = [...model.users.keys()].filter((u) => Object.keys(model.liveState(u)).length === 0);
    expect(expired.length).toBeGreaterThan(0);
    for (const user of model.users.keys()) {
      const s = stored.get(user)!;
      expect(filterLive(s.state, model.streamTime), user).toEqual(model.liveState(user));
      if (expired.includes(user)) expect(s, user).toEqual({ state: {}, expires: null });
    }
    // views list counts a process view's keys with a result as its groups.
    const client = await pool.connect();
    try {
      expect((await store.summary(client, plan.name)).groups).toBe(model.results.size);
    } finally {
      client.release();
    }
    await sink.close();
  });

  it('on a table, retract then add: a map state per customer equals GROUP BY over the current rows, through moves, deletes and a truncate', async () => {
    const definition = fromTable<Order>('public.orders')
      .groupBy('customer')
      .process({
        state: { amounts: mapState<number>() },
        apply(order, ctx) {
          if (ctx.change === 'add') ctx.state.amounts.set(String(order.id), order.amount);
          else ctx.state.amounts.delete(String(order.id));
          const amounts = ctx.state.amounts.entries().map(([, a]) => a);
          return amounts.length === 0 ? null : { orders: amounts.length, total: amounts.reduce((a, b) => a + b, 0) };
        },
      })
      .to('out', { table: 'public.per_customer' }).definition;
    const { out, sink } = makeView(definition);
    await sink.start();
    const rows = new Map<number, Order>();
    const truth = () => {
      const groups = new Map<string, { customer: string; orders: number; total: number }>();
      for (const o of rows.values()) {
        const g = groups.get(o.customer) ?? { customer: o.customer, orders: 0, total: 0 };
        groups.set(o.customer, { ...g, orders: g.orders + 1, total: g.total + o.amount });
      }
      return Object.fromEntries([...groups].map(([c, g]) => [JSON.stringify({ customer: c }), g]));
    };
    const write = async (changes: [Op, Order | { id: number }][]) => {
      const batch = changes.map(([op, o]) => change(op, 'orders', { id: o.id }, op === 'd' || op === 't' ? null : { ...o }, 1_700_000_000_000));
      await sink.write(batch);
      for (const [op, o] of changes) {
        if (op === 't') rows.clear();
        else if (op === 'd') rows.delete(o.id);
        else rows.set(o.id, o as Order);
      }
      return batch;
    };
    await write([
      ['c', { id: 1, customer: 'a', amount: 10 }],
      ['c', { id: 2, customer: 'a', amount: 5 }],
      ['c', { id: 3, customer: 'b', amount: 7 }],
    ]);
    expect(live(out)).toEqual(truth());
    const moves = await write([
      ['u', { id: 1, customer: 'b', amount: 11 }],
      ['u', { id: 2, customer: 'a', amount: 6 }],
      ['d', { id: 3 }],
    ]);
    expect(live(out)).toEqual(truth());
    await sink.write(moves);
    expect(live(out)).toEqual(truth());
    await write([
      ['d', { id: 2 }],
      ['c', { id: 4, customer: 'c', amount: 1 }],
    ]);
    // Customer a's last order left: its result is deleted.
    expect(live(out)).toEqual(truth());
    expect(out.rows.get('{"customer":"a"}')?.row).toBeNull();
    await write([
      ['t', { id: 0 }],
      ['c', { id: 5, customer: 'b', amount: 2 }],
    ]);
    expect(live(out)).toEqual(truth());
    expect(Object.keys(truth())).toEqual(['{"customer":"b"}']);
    await sink.close();
  });

  it('a wall-clock TTL: entries older than it are not read, and the sweep clears them', async () => {
    const definition = fromStream<Click>('public.clicks')
      .groupBy('user')
      .process({
        state: { n: valueState<number>() },
        ttl: { after: 800, clock: 'wall_clock' },
        apply(_click, ctx) {
          const count = (ctx.state.n.get() ?? 0) + 1;
          ctx.state.n.set(count);
          return { n: count };
        },
      })
      .to('out', { table: 'public.recent' }).definition;
    const { plan, out, sink } = makeView(definition);
    await sink.start();
    const click = (user: string) => change('c', 'clicks', { id: offset }, { id: offset, user, page: 'p' }, 0);
    await sink.write([click('a'), click('a'), click('c')]);
    const written = Date.now();
    expect(live(out)['{"user":"a"}']).toEqual({ user: 'a', n: 2 });
    // Wall-clock expiry has nothing to wait on but the clock.
    await waitUntil(() => Date.now() > written + 900, 5_000, 'the TTL to pass');
    expect((await storedState(plan.name)).get('c')?.state).toEqual({ value: { n: { v: 1, e: expect.any(Number) } } });
    // a's expired count is not read (it is still stored: the read itself must skip it).
    await sink.write([click('a')]);
    expect(live(out)['{"user":"a"}']).toEqual({ user: 'a', n: 1 });
    // That batch swept c's expired state; c's result stays as it was.
    expect((await storedState(plan.name)).get('c')).toEqual({ state: {}, expires: null });
    expect(live(out)['{"user":"c"}']).toEqual({ user: 'c', n: 1 });
    await sink.close();
  });

  it('a process function that throws dead-letters its record alone and leaves the key as it was', async () => {
    const definition = fromStream<Click>('public.clicks')
      .groupBy('user')
      .process({
        state: { n: valueState<number>() },
        apply(c, ctx) {
          const count = (ctx.state.n.get() ?? 0) + 1;
          ctx.state.n.set(count);
          if (c.page === 'bad') throw new Error('bad page');
          return { n: count };
        },
      })
      .to('out', { table: 'public.counts' }).definition;
    const { out, sink } = makeView(definition);
    await sink.start();
    const click = (page: string) => change('c', 'clicks', { id: offset }, { id: offset, user: 'a', page }, 0);
    const results = await sink.write([click('p'), click('bad'), click('p')]);
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    expect(results[1]).toMatchObject({ ok: false, error: { stage: 'view', code: 'VIEW_FUNCTION_FAILED', retriable: false, message: 'view p3: its process function threw: bad page' } });
    expect(live(out)).toEqual({ '{"user":"a"}': { user: 'a', n: 2 } });
    await sink.close();
  });

  it('a process function that throws on a table change leaves the row as it was: later changes of it retract what was added', async () => {
    // A running sum: a retraction subtracts the amount of the image it is given, so a wrong image shows.
    const definition = fromTable<Order>('public.orders')
      .groupBy('customer')
      .process({
        state: { total: valueState<number>(), orders: valueState<number>() },
        apply(order, ctx) {
          if (ctx.change === 'add' && order.amount < 0) throw new Error('negative amount');
          const sign = ctx.change === 'add' ? 1 : -1;
          const total = (ctx.state.total.get() ?? 0) + sign * order.amount;
          const orders = (ctx.state.orders.get() ?? 0) + sign;
          ctx.state.total.set(total);
          ctx.state.orders.set(orders);
          return orders === 0 ? null : { total };
        },
      })
      .to('out', { table: 'public.totals' }).definition;
    const { out, sink } = makeView(definition);
    await sink.start();
    // The model: the rows as the applied changes left them (a failed change changes no row), summed per customer.
    const rows = new Map<number, Order>();
    const truth = () => {
      const totals = new Map<string, number>();
      for (const o of rows.values()) totals.set(o.customer, (totals.get(o.customer) ?? 0) + o.amount);
      return Object.fromEntries([...totals].map(([c, total]) => [JSON.stringify({ customer: c }), { customer: c, total }]));
    };
    const write = async (changes: [Op, Order][]) => {
      const results = await sink.write(changes.map(([op, o]) => change(op, 'orders', { id: o.id }, { ...o }, 1_700_000_000_000)));
      changes.forEach(([, o], i) => {
        if (results[i]!.ok) rows.set(o.id, o);
      });
      return results.map((r) => (r.ok ? 'ok' : r.error.code));
    };
    expect(await write([['c', { id: 1, customer: 'a', amount: 10 }]])).toEqual(['ok']);
    expect(live(out)).toEqual(truth());
    // Thrown on the add of the new image: dead-lettered; the same row's next change in the batch retracts 10, not -1.
    expect(
      await write([
        ['u', { id: 1, customer: 'a', amount: -1 }],
        ['u', { id: 1, customer: 'a', amount: 7 }],
      ]),
    ).toEqual(['VIEW_FUNCTION_FAILED', 'ok']);
    expect(live(out)).toEqual(truth());
    expect(live(out)).toEqual({ '{"customer":"a"}': { customer: 'a', total: 7 } });
    // Across batches: thrown, then a later change of the row (moving it to another customer).
    expect(await write([['u', { id: 1, customer: 'a', amount: -5 }]])).toEqual(['VIEW_FUNCTION_FAILED']);
    expect(await write([['u', { id: 1, customer: 'b', amount: 3 }]])).toEqual(['ok']);
    expect(live(out)).toEqual(truth());
    expect(live(out)).toEqual({ '{"customer":"b"}': { customer: 'b', total: 3 } });
    await sink.close();
  });

  describe('through real Kafka', () => {
    let kafka: KafkaFixture;
    const target = `${schema}_target`;
    beforeAll(async () => {
      kafka = await kafkaFixture();
    });
    afterAll(async () => {
      await kafka.close();
      await pool.query(`DROP SCHEMA IF EXISTS "${target}" CASCADE`);
    });

    it('stopped mid-stream, rewound to the beginning and started again: the results equal the model', async () => {
      const prefix = uniqueName('process');
      const topic = `${prefix}.public.clicks`;
      const group = `${prefix}-group`;
      await kafka.createTopic(topic, 1);
      const config = await resolveConfig(
        {
          kafka: { brokers: [BROKER], group_id: group, topics: [topic], heartbeat_interval_ms: 1000, session_timeout_ms: 10_000 },
          sinks: { pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: target } },
          routes: [],
          state: { connection_string: PG_URL, schema },
          handlers: resolve(import.meta.dirname, '../fixtures/handlers/views-process.ts'),
          log: { level: 'warn' },
        },
        { env: {} },
      );
      const clicks = workload();
      const produce = (part: typeof clicks) =>
        kafka.producer.send({
          topic,
          messages: part.map(({ click, timeMs }) => {
            const env = envelope({ op: 'c', table: 'clicks', key: { id: click.id }, after: { ...click }, lsn: 10_000 + click.id * 8, tsMs: timeMs, prefix });
            return { key: env.key, value: env.value, partition: 0 };
          }),
        });
      const applied = async () =>
        Number(
          (await pool.query<{ n: string }>(`SELECT coalesce(max(next_offset), 0)::text AS n FROM "${schema}".view_offsets WHERE view = 'click_stats' AND topic = $1`, [topic])).rows[0]?.n ?? 0,
        );
      // Counted over both runs: what the view applied, and what it recognised as already applied.
      const counts = { applied: 0, skipped: 0 };
      const routerEvents = new RouterEvents();
      routerEvents.on('view.applied', (e) => {
        counts.applied += e.applied;
        counts.skipped += e.skipped;
      });
      const start = (): Promise<Service> => startService(config, { logger, events: routerEvents });

      await produce(clicks.slice(0, 35));
      let service = await start();
      await waitUntil(async () => (await applied()) >= 1, 60_000, 'the first clicks applied');
      await service.stop();
      const before = await applied();
      // Every record delivered again from the start: those applied before the stop must change nothing.
      await kafka.admin.resetOffsets({ groupId: group, topic, earliest: true });
      await produce(clicks.slice(35));
      service = await start();
      try {
        await waitUntil(async () => (await applied()) === clicks.length, 60_000, 'every click applied');
        const model = new ClickModel();
        for (const { click, timeMs } of clicks) model.apply(click, timeMs);
        const expected = [...model.results.values()].sort((a, b) => String(a['user']).localeCompare(String(b['user'])));
        const read = () => pool.query<Row>(`SELECT "user", clicks::int AS clicks, pages::int AS pages, recent FROM "${target}".click_stats ORDER BY 1`).then((r) => r.rows);
        await waitUntil(async () => JSON.stringify(await read()) === JSON.stringify(expected), 30_000, 'the results in PostgreSQL').catch(() => undefined);
        expect(await read()).toEqual(expected);
        expect(before).toBeGreaterThan(0);
        // The rewound records reached the view again and were applied zero times more.
        expect(counts).toEqual({ applied: clicks.length, skipped: before });
      } finally {
        await service.stop();
      }
    });
  });
});

/** Stored entries alive at `nowMs` (e > now), in the stored layout, empty kinds left out. */
function filterLive(state: Record<string, unknown>, nowMs: number): Record<string, unknown> {
  const alive = (e: unknown) => typeof e === 'object' && e !== null && (e as Entry).e > nowMs;
  const out: Record<string, unknown> = {};
  const value = Object.entries((state['value'] ?? {}) as Record<string, unknown>).filter(([, e]) => alive(e));
  if (value.length > 0) out['value'] = Object.fromEntries(value);
  const list = Object.entries((state['list'] ?? {}) as Record<string, unknown[]>).map(([k, l]) => [k, l.filter(alive)] as const).filter(([, l]) => l.length > 0);
  if (list.length > 0) out['list'] = Object.fromEntries(list);
  const map = Object.entries((state['map'] ?? {}) as Record<string, Record<string, unknown>>)
    .map(([k, m]) => [k, Object.fromEntries(Object.entries(m).filter(([, e]) => alive(e)))] as const)
    .filter(([, m]) => Object.keys(m).length > 0);
  if (map.length > 0) out['map'] = Object.fromEntries(map);
  return out;
}

