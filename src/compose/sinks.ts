import type { Logger } from 'pino';
import type { Config, SinkSpec } from '../config/load.ts';
import type { RouterEvents } from '../events.ts';
import { withCircuitBreaker } from '../sink/circuit-breaker.ts';
import { withRateLimit } from '../sink/rate-limiter.ts';
import type { InTransactionWriter, Sink } from '../sink/sink.ts';
import { withWriteCombining } from '../sink/write-combiner.ts';

/** How far a sink is throttled: the sink block's `rate_limit` and `max_in_flight`. */
export type SinkLimits = { readonly rateLimit?: SinkSpec['rateLimit']; readonly maxInFlight?: number | undefined };

export interface BuiltSinks {
  /** Every sink of the config by name, wrapped; not started. */
  readonly sinks: ReadonlyMap<string, Sink>;
  /** The same wrapping for a sink built elsewhere (a view). */
  readonly wrap: (sink: Sink, limits?: SinkLimits) => Sink;
  /**
   * The sinks that can also write inside a caller's transaction on their database, by name (the
   * wrappers hide it: such a write is the caller's transaction, not a call on the sink's store).
   */
  readonly inTransaction: ReadonlyMap<string, InTransactionWriter>;
}

/**
 * The config's sinks as every caller writes through them (the service, replays, dead-letter
 * replay): rate limit, write combining and circuit breaker around each.
 */
export function buildSinks(config: Config, deps: { readonly logger: Logger; readonly events: RouterEvents }): BuiltSinks {
  const { logger, events } = deps;
  // The rate limiter inside the combiner: it meters the writes that reach the store, once per sink.
  // The breaker outside the combiner: each partition's failed write counts (as it would without
  // combining), and while the circuit is open no write even queues for the dead server.
  const wrap = (sink: Sink, limits: SinkLimits = {}) =>
    withCircuitBreaker(
      withWriteCombining(limits.rateLimit ? withRateLimit(sink, limits.rateLimit, events) : sink, {
        concurrency: limits.maxInFlight ?? config.sinkConcurrency,
        maxRecords: config.maxBatchSize,
      }),
      { failureThreshold: config.retry.circuit_failure_threshold, openMs: config.retry.circuit_open_ms },
      events,
      logger,
    );
  const sinks = new Map<string, Sink>();
  const inTransaction = new Map<string, InTransactionWriter>();
  for (const spec of config.sinks) {
    const sink = spec.factory.create(spec.name, spec.config, { logger });
    sinks.set(spec.name, wrap(sink, spec));
    if (sink.inTransaction) inTransaction.set(spec.name, sink.inTransaction);
  }
  return { sinks, wrap, inTransaction };
}
