import { describe, expect, it } from 'vitest';
import type { ChangeEvent, Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { viewSchema } from '../../src/view/view-config.ts';
import { planView } from '../../src/view/view-plan.ts';
import { createViewSink, type ViewSink } from '../../src/view/view-sink.ts';
import { seededRandom } from '../support/random.ts';
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
  const { pool, store, events, logger } = viewState('view_windows', 6);
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
