import type { Logger } from 'pino';
import type { RouterEvents } from '../events.ts';
import type { FailureHandler } from '../pipeline/contracts.ts';
import { AbortedError, retry, type RetryPolicy } from '../retry/retrier.ts';
import { deadLetterOf, type DeadLetterQueue } from './dead-letter-queue.ts';

export interface DeadLetterHandlerDeps {
  readonly dlq: DeadLetterQueue;
  readonly retryPolicy: RetryPolicy;
  readonly events: RouterEvents;
  readonly logger: Logger;
}

/** Settles like `promise`, or rejects with AbortedError as soon as the signal fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new AbortedError(signal.reason));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortedError(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Parks failed records in the dead-letter queue. A record counts as parked (committed past) only
 * once the queue acknowledged it; while the queue is away the put is retried with the pipeline's
 * policy and the partition waits. Shutdown or rebalance aborts the wait (nothing more committed;
 * a put already sent may still land, so an entry can be stored twice: at least once, never lost).
 * An entry the queue refuses for good halts the partition, as without a dead-letter queue.
 */
export function createDeadLetterHandler(deps: DeadLetterHandlerDeps): FailureHandler {
  const log = deps.logger.child({ component: 'dlq', kind: deps.dlq.kind, target: deps.dlq.target });
  return async (failure, signal) => {
    const { record, error } = failure;
    const letter = deadLetterOf(failure);
    const where = {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      stage: letter.context.stage,
      code: error.code,
      sink: failure.sink,
      table: failure.table,
    };
    let id: string;
    try {
      id = await retry(deps.retryPolicy, () => abortable(deps.dlq.put(letter), signal), {
        signal,
        onRetry: (err, attempt, delayMs) =>
          log.warn({ ...where, attempt, delayMs, err }, 'dead-letter write failed; retrying, partition waits'),
      });
    } catch (err) {
      if (err instanceof AbortedError) throw err;
      log.error({ ...where, err, cause: error }, 'record cannot be dead-lettered; partition halted at it');
      return false;
    }
    log.warn({ ...where, id, err: error }, 'record dead-lettered');
    deps.events.emit('record.dead-lettered', {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      id,
      stage: letter.context.stage,
      sink: failure.sink,
      error,
    });
    return true;
  };
}
