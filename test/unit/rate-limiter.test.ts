import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { withRateLimit } from '../../src/sink/rate-limiter.ts';
import { OK, type Sink } from '../../src/sink/sink.ts';
import { createRateLimiter, TokenBucket, type Clock } from '../../src/sink/token-bucket.ts';
import { withWriteCombining } from '../../src/sink/write-combiner.ts';
import { makeEvent } from '../support/events.ts';

/** A clock that moves only when someone sleeps: every wait is exact and the test takes no time. */
function fakeClock(): Clock & { t: number; slept: number[] } {
  const c = {
    t: 0,
    slept: [] as number[],
    now: () => c.t,
    sleep: (ms: number) => {
      c.slept.push(ms);
      c.t += ms;
      return Promise.resolve();
    },
  };
  return c;
}

const events = (n: number): ChangeEvent[] =>
  Array.from({ length: n }, (_, i) => makeEvent({ op: 'c', schema: 's', table: 't', key: { id: i }, after: { id: i }, lsn: i + 1 }));

describe('token bucket (fake clock)', () => {
  it('starts full, refills at the rate, never above its capacity', () => {
    const clock = fakeClock();
    const b = new TokenBucket(10, 5, clock);
    expect(b.delayFor(5)).toBe(0);
    b.take(5);
    expect(b.delayFor(1)).toBe(100);
    clock.t += 250;
    expect(b.delayFor(2)).toBe(0);
    expect(b.delayFor(3)).toBeCloseTo(50);
    clock.t += 10_000;
    expect(b.delayFor(5)).toBe(0);
    b.take(5);
    expect(b.delayFor(5)).toBe(500);
  });

  it('a cost above the capacity waits for a full bucket and leaves it in debt', () => {
    const clock = fakeClock();
    const b = new TokenBucket(100, 50, clock);
    b.take(50);
    expect(b.delayFor(200)).toBe(500);
    clock.t += 500;
    b.take(200);
    // 150 in debt: the next record waits for the debt plus itself.
    expect(b.delayFor(1)).toBeCloseTo(1_510);
  });

  it('over many writes the records and requests rates hold, whichever binds', async () => {
    const clock = fakeClock();
    const limiter = createRateLimiter({ recordsPerSecond: 1_000, requestsPerSecond: 20, burst: 500 }, clock);
    // Small writes: requests bind (20/s); 200 writes of 10 records take ~10 s, not 2 s.
    for (let i = 0; i < 200; i++) await limiter.acquire(10);
    expect(clock.t / 1000).toBeGreaterThanOrEqual(9);
    expect(clock.t / 1000).toBeLessThanOrEqual(10);
    // Large writes: records bind (1000/s); 20 writes of 1000 records take ~20 s.
    const t0 = clock.t;
    for (let i = 0; i < 20; i++) await limiter.acquire(1_000);
    expect((clock.t - t0) / 1000).toBeGreaterThanOrEqual(19);
    expect((clock.t - t0) / 1000).toBeLessThanOrEqual(20.5);
  });

  it('concurrent callers are served in arrival order and report what they waited', async () => {
    const clock = fakeClock();
    const limiter = createRateLimiter({ recordsPerSecond: 10, requestsPerSecond: undefined, burst: 10 }, clock);
    const order: number[] = [];
    const waits = await Promise.all(
      [10, 10, 5].map(async (n, i) => {
        const w = await limiter.acquire(n);
        order.push(i);
        return w;
      }),
    );
    expect(order).toEqual([0, 1, 2]);
    expect(waits).toEqual([0, 1_000, 500]);
  });
});

describe('withRateLimit: one limiter per sink, shared by every partition', () => {
  function countingSink(clock: Clock): Sink & { writes: { at: number; records: number }[] } {
    const writes: { at: number; records: number }[] = [];
    return {
      name: 'slow',
      kind: 'test',
      writes,
      start: () => Promise.resolve(),
      close: () => Promise.resolve(),
      write(batch) {
        writes.push({ at: clock.now(), records: batch.length });
        return Promise.resolve(batch.map(() => OK));
      },
    };
  }

  it('throttles the writes of several partitions together and emits sink.throttled with the wait', async () => {
    const clock = fakeClock();
    const routerEvents = new RouterEvents();
    const throttled: number[] = [];
    routerEvents.on('sink.throttled', (t) => throttled.push(t.waitedMs));
    const inner = countingSink(clock);
    const sink = withRateLimit(inner, { recordsPerSecond: 100, requestsPerSecond: undefined, burst: 100 }, routerEvents, clock);
    // Three "partitions" writing 100 records each at once: 300 records at 100/s.
    const results = await Promise.all([sink.write(events(100)), sink.write(events(100)), sink.write(events(100))]);
    expect(results.map((r) => r.length)).toEqual([100, 100, 100]);
    expect(inner.writes.map((w) => w.at)).toEqual([0, 1_000, 2_000]);
    expect(throttled).toEqual([1_000, 1_000]);
  });

  it('inside the write combiner, batches that arrive while a write waits go out together', async () => {
    const clock = fakeClock();
    const inner = countingSink(clock);
    const limited = withRateLimit(inner, { recordsPerSecond: undefined, requestsPerSecond: 1, burst: undefined }, new RouterEvents(), clock);
    const sink = withWriteCombining(limited, { concurrency: 1, maxRecords: 1_000 });
    await Promise.all([sink.write(events(10)), sink.write(events(10)), sink.write(events(10)), sink.write(events(10))]);
    // One request per second: the first batch alone, the three that queued behind it as one write.
    expect(inner.writes).toEqual([
      { at: 0, records: 10 },
      { at: 1_000, records: 30 },
    ]);
  });

  it('config: rate_limit and max_in_flight beside any sink kind, checked', async () => {
    const base = { kafka: { brokers: ['127.0.0.1:9092'], topics: ['t'] }, routes: [{ table: '*', sinks: ['out'] }] };
    const config = await resolveConfig({
      ...base,
      sinks: { out: { kind: 'file', path: '/tmp/x.jsonl', rate_limit: { records_per_second: 500, requests_per_second: 10, burst: 1000 }, max_in_flight: 3 } },
    });
    expect(config.sinks[0]).toMatchObject({ rateLimit: { recordsPerSecond: 500, requestsPerSecond: 10, burst: 1000 }, maxInFlight: 3 });
    await expect(resolveConfig({ ...base, sinks: { out: { kind: 'file', path: '/tmp/x', rate_limit: {} } } })).rejects.toThrow(/set records_per_second, requests_per_second or both/);
    await expect(resolveConfig({ ...base, sinks: { out: { kind: 'file', path: '/tmp/x', rate_limit: { requests_per_second: 1, burst: 5 } } } })).rejects.toThrow(
      /burst sizes the records bucket/,
    );
    await expect(resolveConfig({ ...base, sinks: { out: { kind: 'file', path: '/tmp/x', max_in_flight: 0 } } })).rejects.toBeInstanceOf(ConfigError);
  });
});
