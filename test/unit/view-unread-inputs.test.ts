import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { partitionKey } from '../../src/view/state-store.ts';
import { cachedUnreadInputs, UNKNOWN_INPUTS, type InputLags } from '../../src/view/unread-inputs.ts';

const logger = pino({ level: 'silent' });
const TOPIC = 'shop.public.visits';
const p0 = partitionKey(TOPIC, 0);
const p1 = partitionKey(TOPIC, 1);
const read = new Set([TOPIC]);

/** An InputLags whose answers the test hands out one by one; counts the lookups. */
function scripted() {
  const pending: { resolve: (lags: Map<string, bigint | undefined>) => void; reject: (err: Error) => void; topics: readonly string[] }[] = [];
  const lags: InputLags = (topics) => new Promise((resolve, reject) => pending.push({ resolve, reject, topics }));
  return { lags, pending };
}

describe('the unread input partitions of a windowed view, looked up in the background', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('asks the admin once per TTL however many writes come, not per write', async () => {
    let lookups = 0;
    const lags: InputLags = () => {
      lookups++;
      return Promise.resolve(new Map([[p0, 0n], [p1, 3n]]));
    };
    const unread = cachedUnreadInputs(lags, { logger, ttlMs: 2_000, timeoutMs: 1_000 });
    for (let i = 0; i < 250; i++) {
      expect(await unread.waiting(read)).toEqual(new Set([p1]));
      await vi.advanceTimersByTimeAsync(10);
    }
    // 250 calls over 2.5 s: the first lookup, and one more once its answer was 2 s old.
    expect(lookups).toBe(2);
  });

  it('only the first call waits for an answer; later ones take the last answer while a new lookup is under way', async () => {
    const { lags, pending } = scripted();
    const unread = cachedUnreadInputs(lags, { logger, ttlMs: 2_000, timeoutMs: 1_000 });
    const first = unread.waiting(read);
    expect(pending).toHaveLength(1);
    pending[0]!.resolve(new Map([[p1, 5n]]));
    expect(await first).toEqual(new Set([p1]));

    await vi.advanceTimersByTimeAsync(2_000);
    // Stale: a second lookup starts, and the call answers at once with the last answer.
    expect(await unread.waiting(read)).toEqual(new Set([p1]));
    expect(pending).toHaveLength(2);
    // No third lookup while the second is under way.
    expect(await unread.waiting(read)).toEqual(new Set([p1]));
    expect(pending).toHaveLength(2);
    pending[1]!.resolve(new Map([[p1, 0n]]));
    await vi.advanceTimersByTimeAsync(0);
    expect(await unread.waiting(read)).toEqual(new Set());
  });

  it('an admin that fails or does not answer holds the watermark (UNKNOWN_INPUTS) without failing or blocking the caller, until a lookup succeeds', async () => {
    const { lags, pending } = scripted();
    const unread = cachedUnreadInputs(lags, { logger, ttlMs: 2_000, timeoutMs: 1_000 });
    // No answer ever: the first call gives up after the timeout.
    const first = unread.waiting(read);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await first).toEqual(new Set([UNKNOWN_INPUTS]));
    // The hanging lookup is not doubled, and later calls do not wait for it.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await unread.waiting(read)).toEqual(new Set([UNKNOWN_INPUTS]));
    expect(pending).toHaveLength(1);
    pending[0]!.reject(new Error('connect ECONNREFUSED'));
    await vi.advanceTimersByTimeAsync(0);
    // A failed lookup: still held; the next call starts another lookup.
    expect(await unread.waiting(read)).toEqual(new Set([UNKNOWN_INPUTS]));
    expect(pending).toHaveLength(2);
    pending[1]!.resolve(new Map([[p0, 0n], [p1, 0n]]));
    await vi.advanceTimersByTimeAsync(0);
    expect(await unread.waiting(read)).toEqual(new Set());
  });

  it('a lookup that answers after a previous one failed replaces the hold; an overdue one that answers late is used', async () => {
    const { lags, pending } = scripted();
    const unread = cachedUnreadInputs(lags, { logger, ttlMs: 2_000, timeoutMs: 1_000 });
    const first = unread.waiting(read);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(await first).toEqual(new Set([UNKNOWN_INPUTS]));
    pending[0]!.resolve(new Map([[p1, 2n]]));
    await vi.advanceTimersByTimeAsync(0);
    expect(await unread.waiting(read)).toEqual(new Set([p1]));
  });

  it('a topic read for the first time starts a new lookup at once (its partitions were not asked about)', async () => {
    const { lags, pending } = scripted();
    const unread = cachedUnreadInputs(lags, { logger, ttlMs: 2_000, timeoutMs: 1_000 });
    const first = unread.waiting(new Set());
    pending[0]!.resolve(new Map());
    expect(await first).toEqual(new Set());
    expect(await unread.waiting(read)).toEqual(new Set());
    expect(pending).toHaveLength(2);
    expect(pending[1]!.topics).toEqual([TOPIC]);
  });

  it('starts no lookup once closed', async () => {
    let lookups = 0;
    const unread = cachedUnreadInputs(
      () => {
        lookups++;
        return Promise.resolve(new Map());
      },
      { logger, ttlMs: 2_000, timeoutMs: 1_000 },
    );
    await unread.waiting(read);
    unread.close();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await unread.waiting(read)).toEqual(new Set());
    expect(lookups).toBe(1);
  });
});
