import { kafkaSchema } from '../../src/config/schema.ts';
import { connectGroupAdmin } from '../../src/consume/group-admin.ts';
import { kafkaInputLags } from '../../src/view/build-views.ts';
import { partitionKey } from '../../src/view/state-store.ts';
import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { viewSchema } from '../../src/view/view-config.ts';
import { planView } from '../../src/view/view-plan.ts';
import { LAG_TIMEOUT_MS, LAG_TTL_MS } from '../../src/view/unread-inputs.ts';
import { createViewSink, type ViewSink } from '../../src/view/view-sink.ts';
import { seededRandom } from '../support/random.ts';
import { BROKER, kafkaFixture, uniqueName } from '../support/kafka.ts';
import { live, recorder, viewState, type Recorder } from '../support/view-state.ts';
import { slidingTruth, sessionTruth, type Visit } from '../support/window-truth.ts';

/**
 * Session, sliding and global windows against real PostgreSQL state, batch by batch: each result
 * set is compared with windows computed from their definitions over every change applied (see
 * test/support/window-truth.ts). Through Kafka and the router process: view-windows-e2e.test.ts.
 */

/** Results with their numbers as text, keyed as the view keys them. */
function asText(rows: Record<string, Row>): Record<string, Record<string, string>> {
  return Object.fromEntries(Object.entries(rows).map(([k, r]) => [k, Object.fromEntries(Object.entries(r).map(([c, v]) => [c, String(v)]))]));
}

const offsets = new Map<number, number>();
function visit(v: Visit, partition = 0, tsMs = 1_700_000_000_000): ChangeEvent {
  const at = offsets.get(partition) ?? 0;
  offsets.set(partition, at + 1);
  return {
    kind: 'change',
    op: 'c',
    table: { id: 'public.visits', db: undefined, schema: 'public', table: 'visits' },
    key: { id: v.id },
    before: null,
    after: { id: v.id, user: v.user, at: v.at, amount: v.amount },
    source: { connector: 'postgresql', name: 't', db: 'shop', schema: 'public', table: 'visits', tsMs, snapshot: undefined, raw: {} },
    position: position('postgres', [BigInt(v.id)]),
    tsMs,
    kafka: { topic: 'shop.public.visits', partition, offset: String(at), timestamp: 0, highWatermark: String(at + 1) },
    columns: undefined,
  };
}

const MIN = 60_000;
const AGGREGATIONS = { n: { fn: 'count' }, total: { fn: 'sum', column: 'amount' } };

describe('session, sliding and global windows with PostgreSQL state', () => {
  const { pool, schema, store, events, logger } = viewState('view_windows', 6);
  let n = 0;

  function makeView(config: Record<string, unknown>, output = recorder(), late?: Recorder, name = `w${n++}`): { sink: Sink; out: Recorder } {
    const plan = planView(name, viewSchema.parse({ ...config, to: { sink: 'out', table: 'public.results' } }));
    return { sink: createViewSink({ plan, pool, store, output, late, events, logger }), out: output };
  }

  const SESSIONS = { from: { stream: 'public.visits' }, group_by: ['user'], window: { session: { gap: '5m' } }, event_time: 'at', aggregations: AGGREGATIONS };

  it('sessions: a change bridging two sessions merges them, and the merged-away results are deleted', async () => {
    const { sink, out } = makeView(SESSIONS);
    await sink.start();
    const visits: Visit[] = [
      { id: 1, user: 'a', at: 0, amount: 3 },
      { id: 2, user: 'a', at: 2 * MIN, amount: 4 },
      { id: 3, user: 'a', at: 10 * MIN, amount: 5 },
      { id: 4, user: 'b', at: 1 * MIN, amount: 1 },
    ];
    await sink.write(visits.map((v) => visit(v)));
    expect(asText(live(out))).toEqual(sessionTruth(visits, 5 * MIN));
    expect(Object.keys(live(out))).toHaveLength(3);
    // 6 min: within 5 min of both a's sessions ([0, 2m] and [10m, 10m]): one session [0, 10m].
    const bridge: Visit = { id: 5, user: 'a', at: 6 * MIN, amount: 10 };
    const batch = [visit(bridge)];
    await sink.write(batch);
    visits.push(bridge);
    expect(asText(live(out))).toEqual(sessionTruth(visits, 5 * MIN));
    expect(live(out)[JSON.stringify({ user: 'a', window_start: 0, window_end: 10 * MIN })]).toEqual({ user: 'a', window_start: 0, window_end: 10 * MIN, n: 4, total: 22 });
    // The two merged-away sessions were deleted downstream (not left behind as stale rows).
    expect(out.rows.get(JSON.stringify({ user: 'a', window_start: 0, window_end: 2 * MIN }))?.row).toBeNull();
    expect(out.rows.get(JSON.stringify({ user: 'a', window_start: 10 * MIN, window_end: 10 * MIN }))?.row).toBeNull();
    // Redelivered (same offsets): applied zero times more.
    await sink.write(batch);
    expect(asText(live(out))).toEqual(sessionTruth(visits, 5 * MIN));
    await sink.close();
  });

  /** Random visits of three users in random batches over two partitions, some batches delivered twice; then a restart. */
  async function randomRun(config: Record<string, unknown>, truth: (v: readonly Visit[]) => Record<string, Record<string, string>>, seed: number) {
    const random = seededRandom(seed).next;
    const name = `w${n++}`;
    const made = makeView(config, recorder(), undefined, name);
    const out = made.out;
    let sink = made.sink;
    await sink.start();
    const applied: Visit[] = [];
    let id = 1000 * seed;
    let previous: ChangeEvent[] = [];
    for (let round = 0; round < 12; round++) {
      const size = 1 + Math.floor(random() * 25);
      const visits = Array.from({ length: size }, (): Visit => ({ id: id++, user: `u${Math.floor(random() * 3)}`, at: Math.floor(random() * 180) * MIN + Math.floor(random() * 3) * 17_000, amount: 1 + Math.floor(random() * 50) }));
      const batch = visits.map((v) => visit(v, random() < 0.5 ? 0 : 1));
      // A partition's records in offset order, as Kafka delivers them; the two partitions interleaved.
      await sink.write(batch);
      applied.push(...visits);
      if (random() < 0.4 && previous.length > 0) await sink.write(previous);
      previous = batch;
      if (round === 6) {
        // A restart: a new instance over the same state reads everything from PostgreSQL.
        await sink.close();
        ({ sink } = makeView(config, out, undefined, name));
        await sink.start();
      }
      expect(asText(live(out)), `round ${round}`).toEqual(truth(applied));
    }
    await sink.close();
    return Object.keys(live(out)).length;
  }

  it('sessions over random batches, redeliveries and a restart equal the sessions of every change applied once', async () => {
    const results = await randomRun(SESSIONS, (v) => sessionTruth(v, 5 * MIN), 3);
    expect(results).toBeGreaterThan(10);
  });

  it("sliding windows (Kafka Streams' definition) over random batches, redeliveries and a restart", async () => {
    const config = { from: { stream: 'public.visits' }, group_by: ['user'], window: { sliding: { difference: '10m' } }, event_time: 'at', aggregations: AGGREGATIONS };
    const results = await randomRun(config, (v) => slidingTruth(v, 10 * MIN), 5);
    expect(results).toBeGreaterThan(20);
  });

  it('a global window with a count trigger emits after every N changes of a key; with a time trigger once per interval of the watermark', async () => {
    const counted = makeView({ from: { stream: 'public.visits' }, group_by: ['user'], window: { global: { trigger: { count: 2 } } }, aggregations: AGGREGATIONS });
    await counted.sink.start();
    const key = JSON.stringify({ user: 'a' });
    const seen: (Row | undefined)[] = [];
    for (let i = 1; i <= 5; i++) {
      await counted.sink.write([visit({ id: 100 + i, user: 'a', at: i * 1000, amount: i })]);
      seen.push(live(counted.out)[key]);
    }
    expect(seen).toEqual([undefined, { user: 'a', n: 2, total: 3 }, { user: 'a', n: 2, total: 3 }, { user: 'a', n: 4, total: 10 }, { user: 'a', n: 4, total: 10 }]);
    await counted.sink.close();

    // Event time is the commit time (a stream's default): the watermark follows it.
    const timed = makeView({ from: { stream: 'public.visits' }, group_by: ['user'], window: { global: { trigger: { every: '10s' } } }, aggregations: AGGREGATIONS });
    await timed.sink.start();
    const steps: [number, Row | undefined][] = [];
    for (const [i, ts] of [1_000, 2_000, 3_000, 12_000, 13_000].entries()) {
      await timed.sink.write([visit({ id: 200 + i, user: 'a', at: 0, amount: 1 }, 0, ts)]);
      steps.push([ts, live(timed.out)[key]]);
    }
    expect(steps).toEqual([
      [1_000, { user: 'a', n: 1, total: 1 }],
      [2_000, { user: 'a', n: 1, total: 1 }],
      [3_000, { user: 'a', n: 1, total: 1 }],
      [12_000, { user: 'a', n: 4, total: 4 }],
      [13_000, { user: 'a', n: 4, total: 4 }],
    ]);
    await timed.sink.close();
  });

  it('a Debezium heartbeat moves the partitions applied to their end, so an idle one does not hold windows open; one behind keeps its clock', async () => {
    const config = { from: { stream: 'public.visits' }, window: { tumbling: '10s' }, event_time: 'at', emit: 'final', grace: '0ms', aggregations: { n: { fn: 'count' } } };
    const run = async (p1End: bigint) => {
      const { sink, out } = makeView(config);
      await sink.start();
      const batch = [visit({ id: 1, user: 'a', at: 1_000, amount: 1 }, 0), visit({ id: 2, user: 'a', at: 500, amount: 1 }, 1), visit({ id: 3, user: 'a', at: 25_000, amount: 1 }, 0)];
      await sink.write(batch);
      // Partition 1 is at 500 ms: nothing closes.
      expect(live(out)).toEqual({});
      const ends = new Map([
        [`shop.public.visits\u00000`, BigInt(batch[2]!.kafka.offset) + 1n],
        [`shop.public.visits\u00001`, p1End],
      ]);
      await (sink as ViewSink).heartbeat({ topicPrefix: 'shop', tsMs: 30_000, ends });
      // Another connector's heartbeat vouches for nothing here.
      await (sink as ViewSink).heartbeat({ topicPrefix: 'other', tsMs: 90_000, ends });
      await sink.close();
      return live(out);
    };
    const win = (start: number) => JSON.stringify({ window_start: start, window_end: start + 10_000 });
    const applied = offsets.get(1)!;
    expect(await run(BigInt(applied))).toEqual({
      [win(0)]: { window_start: 0, window_end: 10_000, n: 2 },
      [win(20_000)]: { window_start: 20_000, window_end: 30_000, n: 1 },
    });
    // Partition 1 has records still unread (end beyond what was applied): the heartbeat must not make them late.
    expect(await run(BigInt(offsets.get(1)! + 5))).toEqual({});
  });

  it('a partition of the input topic the view has never read, with records waiting in Kafka, holds the watermark: the window closes once they are read', async () => {
    const kafka = await kafkaFixture();
    const kafkaConfig = kafkaSchema.parse({ brokers: [BROKER], group_id: uniqueName('view-unread'), topics: [`${uniqueName('shop')}.public.visits`] });
    const topic = kafkaConfig.topics![0]!;
    const admin = await connectGroupAdmin(kafkaConfig, logger);
    try {
      await kafka.createTopic(topic, 2);
      const at = (v: Visit, partition: number, offset: number): ChangeEvent => {
        const e = visit(v, partition);
        return { ...e, kafka: { ...e.kafka, topic, offset: String(offset), highWatermark: String(offset + 1) } };
      };
      // Partition 1's changes are in Kafka first (older event times); the view reads partition 0 first.
      const p1: Visit[] = [
        { id: 601, user: 'a', at: 2_000, amount: 1 },
        { id: 602, user: 'a', at: 4_000, amount: 1 },
        { id: 603, user: 'a', at: 26_000, amount: 1 },
      ];
      const p0: Visit[] = [
        { id: 604, user: 'a', at: 1_000, amount: 1 },
        { id: 605, user: 'a', at: 25_000, amount: 1 },
      ];
      for (const [partition, visits] of [[1, p1], [0, p0]] as const) {
        await kafka.producer.send({ topic, messages: visits.map((v) => ({ key: String(v.id), value: JSON.stringify(v), partition })) });
      }
      const name = `w${n++}`;
      const plan = finalCounts(name);
      const out = recorder();
      const inputLags = kafkaInputLags(kafkaConfig, () => Promise.resolve(admin), plan.inputs);
      const sink = createViewSink({ plan, pool, store, output: out, events, logger, inputLags });
      await sink.start();
      const stored = () => storedWatermark(name);

      const first = await sink.write(p0.map((v, i) => at(v, 0, i)));
      expect(first.map((r) => r.ok)).toEqual([true, true]);
      // Partition 0 alone is at 25 s, but partition 1 has three records unread: no window closes.
      expect(live(out)).toEqual({});
      expect(await stored()).toBeNull();
      // A heartbeat moves partition 0 (applied to its end) to 60 s; partition 1 still holds.
      const ends = new Map([...(await kafka.endOffsets(topic))].map(([p, end]) => [partitionKey(topic, p), end]));
      expect(ends.get(partitionKey(topic, 0))).toBe(BigInt(p0.length));
      await (sink as ViewSink).heartbeat({ topicPrefix: topic.split('.')[0]!, tsMs: 60_000, ends });
      expect(live(out)).toEqual({});
      expect(await stored()).toBeNull();

      const second = await sink.write(p1.map((v, i) => at(v, 1, i)));
      // None of partition 1's changes is late, and the window holds every change in it.
      expect(second.map((r) => r.ok)).toEqual([true, true, true]);
      const all = [...p0, ...p1];
      // Partition 0 at the heartbeat's 60 s, partition 1 at its latest change: the watermark is partition 1's.
      expect(await stored()).toBe(String(Math.max(...p1.map((v) => v.at))));
      expect(live(out)).toEqual({
        [JSON.stringify({ window_start: 0, window_end: 10_000 })]: { window_start: 0, window_end: 10_000, n: all.filter((v) => v.at < 10_000).length },
      });
      await sink.close();
    } finally {
      await admin.close();
      await kafka.close();
    }
  });

  /** A tumbling 10 s count over the visits, final results: its watermark decides what is written. */
  const finalCounts = (name: string) =>
    planView(
      name,
      viewSchema.parse({
        from: { stream: 'public.visits' },
        window: { tumbling: '10s' },
        event_time: 'at',
        emit: 'final',
        grace: '0ms',
        aggregations: { n: { fn: 'count' } },
        to: { sink: 'out', table: 'public.results' },
      }),
    );
  const storedWatermark = async (name: string) =>
    (await pool.query<{ w: string }>(`SELECT watermark_ms::text AS w FROM "${schema}".view_watermarks WHERE view = $1`, [name])).rows[0]?.w ?? null;
  const onTopic = (topic: string, v: Visit, partition: number, offset: number): ChangeEvent => {
    const e = visit(v, partition);
    return { ...e, kafka: { ...e.kafka, topic, offset: String(offset), highWatermark: String(offset + 1) } };
  };

  it('with the Kafka admin out of reach, writes neither fail nor wait for it and the watermark holds; once it answers, the watermark moves without another write', async () => {
    const topic = `${uniqueName('shop')}.public.visits`;
    const reachable = kafkaSchema.parse({ brokers: [BROKER], group_id: uniqueName('view-unread'), topics: [topic] });
    // Nothing listens on port 1: kafkajs retries the connection for seconds, then gives up.
    const unreachable = kafkaSchema.parse({ ...reachable, brokers: ['127.0.0.1:1'], connection_timeout_ms: 500 });
    let up = false;
    const admin = await connectGroupAdmin(reachable, logger);
    const lookups: Promise<unknown>[] = [];
    const settled = new WeakSet<Promise<unknown>>();
    const name = `w${n++}`;
    const plan = finalCounts(name);
    const lags = kafkaInputLags(reachable, () => (up ? Promise.resolve(admin) : connectGroupAdmin(unreachable, logger)), plan.inputs);
    const inputLags = (read: readonly string[]) => {
      const lookup = lags(read);
      lookups.push(lookup);
      void lookup.catch(() => undefined).finally(() => settled.add(lookup));
      return lookup;
    };
    const out = recorder();
    const sink = createViewSink({ plan, pool, store, output: out, events, logger, inputLags });
    try {
      await sink.start();
      const t0 = performance.now();
      const first = await sink.write([onTopic(topic, { id: 701, user: 'a', at: 1_000, amount: 1 }, 0, 0), onTopic(topic, { id: 702, user: 'a', at: 25_000, amount: 1 }, 0, 1)]);
      const firstMs = performance.now() - t0;
      expect(first.map((r) => r.ok)).toEqual([true, true]);
      // Waited at most the lookup timeout (the first answer), not for kafkajs's retries.
      expect(firstMs).toBeLessThan(LAG_TIMEOUT_MS + 2_000);
      expect(lookups.length).toBeGreaterThanOrEqual(1);
      expect(settled.has(lookups[0]!)).toBe(false);
      // One partition at 25 s, alone as far as anyone knows: were the lags known, [0, 10 s) would close.
      expect(await storedWatermark(name)).toBeNull();
      expect(live(out)).toEqual({});
      // Later writes do not wait for the lookup still under way either, nor start others beside it.
      for (let i = 0; i < 5; i++) {
        const r = await sink.write([onTopic(topic, { id: 710 + i, user: 'a', at: 25_000, amount: 1 }, 0, 2 + i)]);
        expect(r.map((x) => x.ok)).toEqual([true]);
      }
      expect(settled.has(lookups[0]!)).toBe(false);
      expect(lookups).toHaveLength(1);
      expect(await storedWatermark(name)).toBeNull();

      // The admin answers again: the relay's tick looks the lags up and moves the watermark.
      up = true;
      await Promise.allSettled(lookups);
      const deadline = Date.now() + 20_000;
      while ((await storedWatermark(name)) === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(await storedWatermark(name)).toBe('25000');
      expect(live(out)).toEqual({ [JSON.stringify({ window_start: 0, window_end: 10_000 })]: { window_start: 0, window_end: 10_000, n: 1 } });
    } finally {
      await sink.close();
      await Promise.allSettled(lookups);
      await admin.close();
    }
  });

  it('asks the Kafka admin for the input lags at most once per LAG_TTL_MS, not once per write', async () => {
    const kafka = await kafkaFixture();
    const kafkaConfig = kafkaSchema.parse({ brokers: [BROKER], group_id: uniqueName('view-unread'), topics: [`${uniqueName('shop')}.public.visits`] });
    const topic = kafkaConfig.topics![0]!;
    const admin = await connectGroupAdmin(kafkaConfig, logger);
    const name = `w${n++}`;
    const plan = finalCounts(name);
    const lags = kafkaInputLags(kafkaConfig, () => Promise.resolve(admin), plan.inputs);
    let lookups = 0;
    const sink = createViewSink({ plan, pool, store, output: recorder(), events, logger, inputLags: (read) => (lookups++, lags(read)) });
    try {
      await kafka.createTopic(topic, 2);
      await sink.start();
      const t0 = Date.now();
      const writes = 30;
      for (let i = 0; i < writes; i++) {
        const r = await sink.write([onTopic(topic, { id: 800 + i, user: 'a', at: 1_000 * i, amount: 1 }, i % 2, Math.floor(i / 2))]);
        expect(r.map((x) => x.ok)).toEqual([true]);
      }
      const elapsed = Date.now() - t0;
      // The first lookup (at start), then one each time the last answer is LAG_TTL_MS old.
      expect(lookups).toBeLessThanOrEqual(1 + Math.ceil(elapsed / LAG_TTL_MS));
      expect(lookups).toBeLessThan(writes);
    } finally {
      await sink.close();
      await admin.close();
      await kafka.close();
    }
  });

  it('a late change goes to the named late sink with its reason, window and watermark; without one it fails with stage view', async () => {
    const lateOut = recorder('late-out');
    const config = {
      ...SESSIONS,
      grace: '1m',
      late: { sink: 'late-out', table: 'public.late_visits' },
    };
    const { sink, out } = makeView(config, recorder(), lateOut);
    await sink.start();
    await sink.write([visit({ id: 301, user: 'a', at: 0, amount: 1 }), visit({ id: 302, user: 'a', at: 30 * MIN, amount: 1 })]);
    // Watermark 30 min: a session at 10 min (closed at 10 min + 1 ms + grace 1 min) is late; one at 26 min joins the open session.
    const results = await sink.write([visit({ id: 303, user: 'b', at: 10 * MIN, amount: 7 }), visit({ id: 304, user: 'a', at: 26 * MIN, amount: 2 })]);
    expect(results.map((r) => r.ok)).toEqual([true, true]);
    expect(asText(live(out))).toEqual(
      sessionTruth(
        [
          { id: 301, user: 'a', at: 0, amount: 1 },
          { id: 302, user: 'a', at: 30 * MIN, amount: 1 },
          { id: 304, user: 'a', at: 26 * MIN, amount: 2 },
        ],
        5 * MIN,
      ),
    );
    const lateRows = Object.values(live(lateOut));
    expect(lateRows).toHaveLength(1);
    expect(lateRows[0]).toMatchObject({
      topic: 'shop.public.visits',
      kafka_partition: 0,
      event_time_ms: 10 * MIN,
      window_start: 10 * MIN,
      window_end: 10 * MIN,
      watermark_ms: 30 * MIN,
      op: 'c',
    });
    expect(String(lateRows[0]?.['reason'])).toMatch(/too late for session window \[1970-01-01T00:10:00\.000Z.*watermark 1970-01-01T00:30:00\.000Z/);
    expect(JSON.parse(String(lateRows[0]?.['change']))).toEqual({ id: 303, user: 'b', at: 10 * MIN, amount: 7 });
    await sink.close();

    const { sink: plain } = makeView({ ...SESSIONS, grace: '1m' });
    await plain.start();
    await plain.write([visit({ id: 401, user: 'a', at: 30 * MIN, amount: 1 })]);
    const [failed] = await plain.write([visit({ id: 402, user: 'b', at: 10 * MIN, amount: 1 })]);
    expect(failed).toMatchObject({ ok: false, error: { stage: 'view', code: 'VIEW_LATE', retriable: false } });
    await plain.close();
  });
});
