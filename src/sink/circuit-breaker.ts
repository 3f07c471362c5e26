import type { Logger } from 'pino';
import { SinkError } from '../errors.ts';
import type { CircuitState, RouterEvents } from '../events.ts';
import type { Sink } from './sink.ts';

export interface CircuitOptions {
  /** Consecutive failed writes (retriable, whole batch) that open the circuit. */
  readonly failureThreshold: number;
  /** How long an open circuit refuses writes before one trial write is let through. */
  readonly openMs: number;
}

/**
 * Wraps a sink so that, once its server looks dead, writes from every partition fail fast (as
 * retriable errors the retrier backs off on) instead of each one hammering the server. After
 * `openMs` one trial write goes through: success closes the circuit, failure opens it again.
 * Only transport-level failures count; per-record results never open it.
 */
export function withCircuitBreaker(sink: Sink, options: CircuitOptions, events: RouterEvents, logger: Logger): Sink {
  let state: CircuitState = 'closed';
  let failures = 0;
  let openedAt = 0;
  let trial = false;
  const log = logger.child({ component: 'circuit', sink: sink.name });
  const set = (next: CircuitState) => {
    if (next === state) return;
    state = next;
    log.warn({ state }, `circuit ${state}`);
    events.emit('sink.circuit', { sink: sink.name, state });
  };
  return {
    name: sink.name,
    kind: sink.kind,
    start: () => sink.start(),
    close: () => sink.close(),
    async write(batch) {
      if (state === 'open') {
        if (Date.now() - openedAt < options.openMs || trial) {
          throw new SinkError(sink.name, 'circuit open: server recently unreachable', { code: 'CIRCUIT_OPEN', retriable: true });
        }
        set('half-open');
      } else if (state === 'half-open' && trial) {
        throw new SinkError(sink.name, 'circuit half-open: trial write in progress', { code: 'CIRCUIT_OPEN', retriable: true });
      }
      const isTrial = state === 'half-open';
      if (isTrial) trial = true;
      try {
        const results = await sink.write(batch);
        failures = 0;
        set('closed');
        return results;
      } catch (err) {
        if (err instanceof SinkError && err.retriable) {
          failures++;
          if (isTrial || failures >= options.failureThreshold) {
            openedAt = Date.now();
            set('open');
          }
        }
        throw err;
      } finally {
        if (isTrial) trial = false;
      }
    },
  };
}
