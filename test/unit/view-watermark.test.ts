import { describe, expect, it } from 'vitest';
import {
  type PartitionClock,
  heartbeat,
  isIdle,
  newPartitionClock,
  observe,
  setCaughtUp,
  viewWatermark,
} from '../../src/view/core/watermark.ts';
import { isLate } from '../../src/view/core/windows.ts';
import { watermarkOf } from '../../src/view/event-clock.ts';
import { partitionKey } from '../../src/view/state-store.ts';
import { UNKNOWN_INPUTS } from '../../src/view/unread-inputs.ts';
import { viewSchema } from '../../src/view/view-config.ts';
import { planView } from '../../src/view/view-plan.ts';

const live = { snapshot: false };
const snap = { snapshot: true };
const opts = { outOfOrdernessMs: 100, idleTimeoutMs: 10_000 };

function clockAt(events: number[], wall = 0): PartitionClock {
  return events.reduce((c, t) => observe(c, t, live, wall), newPartitionClock(wall));
}

describe('partition clocks', () => {
  it('keep the highest event time: out-of-order events do not move it back', () => {
    const c = clockAt([1000, 1500, 1200, 900]);
    expect(c.maxEventMs).toBe(1500);
    expect(viewWatermark([c], opts, 0)).toBe(1400);
  });

  it('do not let snapshot reads advance the event time, but count them as activity', () => {
    let c = clockAt([1000], 0);
    c = observe(c, 9_999_999, snap, 5000);
    expect(c.maxEventMs).toBe(1000);
    expect(c.lastEventWallMs).toBe(5000);
    const onlySnapshot = observe(newPartitionClock(0), 5000, snap, 10);
    expect(onlySnapshot.maxEventMs).toBeNull();
    expect(viewWatermark([onlySnapshot], opts, 20)).toBeNull();
  });

  it('survive JSON (the state store keeps them as jsonb)', () => {
    const c = heartbeat(setCaughtUp(clockAt([5, 7], 3), true), 9);
    expect(JSON.parse(JSON.stringify(c))).toEqual(c);
  });

  it('refuse times that are not whole milliseconds', () => {
    expect(() => observe(newPartitionClock(0), 1.5, live, 0)).toThrow(RangeError);
    expect(() => heartbeat(newPartitionClock(0), NaN)).toThrow(RangeError);
  });
});

describe('view watermark', () => {
  it('is the minimum over partitions minus the out-of-orderness bound', () => {
    const a = clockAt([5000]);
    const b = clockAt([3000]);
    expect(viewWatermark([a, b], opts, 0)).toBe(2900);
    expect(viewWatermark([], opts, 0)).toBeNull();
  });

  it('is held by a partition that has seen nothing and is not idle', () => {
    expect(viewWatermark([clockAt([5000]), newPartitionClock(0)], opts, 1)).toBeNull();
  });

  it('does not call a partition idle on the timer alone (it may be lagging)', () => {
    const slow = clockAt([1000], 0);
    const fast = clockAt([50_000], 0);
    expect(isIdle(slow, opts.idleTimeoutMs, 60_000)).toBe(false);
    expect(viewWatermark([slow, fast], opts, 60_000)).toBe(900);
    const caughtUp = setCaughtUp(slow, true);
    expect(isIdle(caughtUp, opts.idleTimeoutMs, 9_999)).toBe(false);
    expect(isIdle(caughtUp, opts.idleTimeoutMs, 10_000)).toBe(true);
    expect(viewWatermark([caughtUp, fast], opts, 60_000)).toBe(49_900);
  });

  it('an idle partition does not hold a window open; a new change makes it active again', () => {
    const quiet = setCaughtUp(clockAt([1000], 0), true);
    const busy = clockAt([20_000], 0);
    const wm = viewWatermark([quiet, busy], opts, 15_000);
    expect(wm).toBe(19_900);
    expect(isLate(5000, wm, 0, { kind: 'tumbling', sizeMs: 10_000 })).toBe(true);
    const woke = observe(quiet, 2000, live, 15_000);
    expect(isIdle(woke, opts.idleTimeoutMs, 15_000)).toBe(false);
    // Active again with an older time, but the watermark never goes back.
    expect(viewWatermark([woke, busy], { ...opts, previousMs: wm }, 15_000)).toBe(19_900);
    expect(viewWatermark([woke, busy], opts, 15_000)).toBe(1900);
  });

  it('moves to the highest partition time when every partition is idle', () => {
    const a = setCaughtUp(clockAt([4000], 0), true);
    const b = setCaughtUp(clockAt([7000], 0), true);
    expect(viewWatermark([a, b], opts, 5_000)).toBe(3900);
    expect(viewWatermark([a, b], opts, 10_000)).toBe(6900);
    const empty = setCaughtUp(newPartitionClock(0), true);
    expect(viewWatermark([empty], { ...opts, previousMs: 42 }, 10_000)).toBe(42);
  });

  it('advances a caught-up partition by Debezium heartbeats, a lagging one not', () => {
    let quiet = clockAt([1000], 0);
    const busy = clockAt([50_000], 0);
    quiet = heartbeat(quiet, 30_000);
    expect(viewWatermark([quiet, busy], opts, 1000)).toBe(900);
    quiet = setCaughtUp(quiet, true);
    expect(viewWatermark([quiet, busy], opts, 1000)).toBe(29_900);
    expect(heartbeat(quiet, 20_000).lastHeartbeatMs).toBe(30_000);
    // A heartbeat alone gives a partition that has seen no change a time.
    const fresh = setCaughtUp(heartbeat(newPartitionClock(0), 40_000), true);
    expect(viewWatermark([fresh, busy], opts, 1000)).toBe(39_900);
    expect(setCaughtUp(quiet, false).caughtUp).toBe(false);
  });

  it('never goes backwards', () => {
    const c = clockAt([5000]);
    expect(viewWatermark([c], { ...opts, previousMs: 6000 }, 0)).toBe(6000);
    expect(viewWatermark([c], { ...opts, previousMs: 100 }, 0)).toBe(4900);
    expect(viewWatermark([newPartitionClock(0)], { ...opts, previousMs: 7 }, 0)).toBe(7);
  });

  it('separates late changes from those within the bound and the grace', () => {
    const spec = { kind: 'tumbling', sizeMs: 1000 } as const;
    const wm = viewWatermark([clockAt([10_150])], opts, 0); // 10_050
    expect(wm).toBe(10_050);
    expect(isLate(10_060, wm, 0, spec)).toBe(false); // inside the out-of-orderness bound
    expect(isLate(9_999, wm, 0, spec)).toBe(true); // window [9000, 10000) closed
    expect(isLate(9_999, wm, 51, spec)).toBe(false); // ... but open with 51 ms grace (closes at 10_000 + 51)
    expect(isLate(9_999, wm, 50, spec)).toBe(true);
  });
});

describe('a view watermark over its input partitions', () => {
  const plan = planView(
    'w',
    viewSchema.parse({
      from: { stream: 'public.visits' },
      window: { tumbling: '10s' },
      event_time: 'at',
      emit: 'final',
      idle_timeout: '10s',
      aggregations: { n: { fn: 'count' } },
      to: { sink: 'out', table: 'public.results' },
    }),
  );
  const p0 = partitionKey('shop.public.visits', 0);
  const p1 = partitionKey('shop.public.visits', 1);
  const read = new Map([[p0, setCaughtUp(clockAt([25_000], 0), true)]]);

  it('is held back by a partition with records waiting that it has never read, however long it waits', () => {
    expect(watermarkOf(plan, new Map(), read, null, 0)).toBe(25_000);
    expect(watermarkOf(plan, new Map(), read, null, 0, new Set([p1]))).toBeNull();
    expect(watermarkOf(plan, new Map(), read, 5_000, 60_000, new Set([p1]))).toBe(5_000);
  });

  it('is held back while the input lags are unknown (UNKNOWN_INPUTS), and never goes back', () => {
    expect(watermarkOf(plan, new Map(), read, null, 0, new Set([UNKNOWN_INPUTS]))).toBeNull();
    expect(watermarkOf(plan, new Map(), read, 5_000, 60_000, new Set([UNKNOWN_INPUTS]))).toBe(5_000);
  });

  it('is not held back by a waiting partition that has a clock: its clock counts', () => {
    expect(watermarkOf(plan, new Map(), read, null, 0, new Set([p0]))).toBe(25_000);
  });
});
