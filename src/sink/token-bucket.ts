/** Time for the rate limiter: the real clock in service, a fake one in unit tests. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * A token bucket: `ratePerSecond` tokens flow in, at most `capacity` are kept. Hand-written: the
 * limiter libraries on npm refuse a cost larger than the bucket, while one sink write can be larger
 * than the burst; here such a cost waits for a full bucket and then leaves it in debt, so the
 * average rate still holds.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly ratePerSecond: number,
    readonly capacity: number,
    private readonly clock: Clock,
  ) {
    this.tokens = capacity;
    this.last = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.ratePerSecond) / 1000);
    this.last = now;
  }

  /** Milliseconds until `cost` may be taken: when the bucket holds it, or is full for a larger cost. */
  delayFor(cost: number): number {
    this.refill();
    const need = Math.min(cost, this.capacity);
    return this.tokens >= need ? 0 : ((need - this.tokens) * 1000) / this.ratePerSecond;
  }

  take(cost: number): void {
    this.refill();
    this.tokens -= cost;
  }
}

export interface RateLimits {
  readonly recordsPerSecond: number | undefined;
  readonly requestsPerSecond: number | undefined;
  /** Records the records bucket holds (default: one second's worth). */
  readonly burst: number | undefined;
}

/**
 * Records and requests buckets taken together. Callers wait in arrival order (one chain), so that a
 * large write is not starved by small ones slipping past it.
 */
export function createRateLimiter(limits: RateLimits, clock: Clock = systemClock): { acquire(records: number): Promise<number> } {
  const buckets: { bucket: TokenBucket; cost: (records: number) => number }[] = [];
  if (limits.recordsPerSecond !== undefined) {
    const capacity = limits.burst ?? Math.max(1, limits.recordsPerSecond);
    buckets.push({ bucket: new TokenBucket(limits.recordsPerSecond, capacity, clock), cost: (n) => n });
  }
  if (limits.requestsPerSecond !== undefined) {
    buckets.push({ bucket: new TokenBucket(limits.requestsPerSecond, Math.max(1, limits.requestsPerSecond), clock), cost: () => 1 });
  }
  let chain: Promise<unknown> = Promise.resolve();
  return {
    /** Resolves, with the milliseconds waited, once a write of `records` may go. */
    acquire(records) {
      const turn = chain.then(async () => {
        const start = clock.now();
        for (;;) {
          const wait = Math.max(0, ...buckets.map((b) => b.bucket.delayFor(b.cost(records))));
          if (wait === 0) break;
          await clock.sleep(wait);
        }
        for (const b of buckets) b.bucket.take(b.cost(records));
        return clock.now() - start;
      });
      chain = turn.catch(() => undefined);
      return turn;
    },
  };
}
