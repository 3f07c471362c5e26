/** A count over a sliding window (the last minute by default), read as a rate per second. */
export interface RateWindow {
  add(n: number, nowMs?: number): void;
  /** Sum over the window divided by its length, or by the time since `startedAt` while shorter. */
  perSecond(nowMs?: number): number;
}

/**
 * Ring of per-bucket counts: adding is O(1), reading sums the ring. A bucket whose slot is older than
 * the window is stale and counts as zero, so nothing has to expire on a timer.
 */
export function createRateWindow(options: { windowMs?: number; bucketMs?: number; startedAt?: number } = {}): RateWindow {
  const windowMs = options.windowMs ?? 60_000;
  const bucketMs = options.bucketMs ?? 1_000;
  const size = Math.max(1, Math.ceil(windowMs / bucketMs));
  const slots = new Float64Array(size).fill(-1);
  const counts = new Float64Array(size);
  const startedAt = options.startedAt ?? Date.now();

  return {
    add(n, nowMs = Date.now()) {
      const slot = Math.floor(nowMs / bucketMs);
      const i = slot % size;
      if (slots[i] !== slot) {
        slots[i] = slot;
        counts[i] = 0;
      }
      counts[i] = counts[i]! + n;
    },
    perSecond(nowMs = Date.now()) {
      const current = Math.floor(nowMs / bucketMs);
      let sum = 0;
      for (let i = 0; i < size; i++) if (slots[i]! > current - size && slots[i]! <= current) sum += counts[i]!;
      const spanMs = Math.min(windowMs, Math.max(bucketMs, nowMs - startedAt));
      return sum / (spanMs / 1000);
    },
  };
}
