import type { RouterEvents } from '../events.ts';
import type { Sink } from './sink.ts';
import { createRateLimiter, systemClock, type Clock, type RateLimits } from './token-bucket.ts';

/**
 * Caps what a sink receives: each write waits until the sink's buckets hold its records and one
 * request. Wrapped around the sink itself, inside the write combiner, so the one limiter of a sink
 * is shared by every partition of the process, and a write that waits holds a `max_in_flight` slot:
 * batches arriving meanwhile combine into the next, larger write instead of each paying a request.
 * Retried writes pay again (they reach the store again). Waits are reported as `sink.throttled`.
 */
export function withRateLimit(sink: Sink, limits: RateLimits, events: RouterEvents, clock: Clock = systemClock): Sink {
  const limiter = createRateLimiter(limits, clock);
  return {
    name: sink.name,
    kind: sink.kind,
    start: () => sink.start(),
    close: () => sink.close(),
    async write(batch) {
      if (batch.length === 0) return sink.write(batch);
      const waitedMs = await limiter.acquire(batch.length);
      if (waitedMs > 0) events.emit('sink.throttled', { sink: sink.name, records: batch.length, waitedMs });
      return sink.write(batch);
    },
  };
}
