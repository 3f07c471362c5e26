import type { Logger } from 'pino';
import { CdcError, SinkError, errorMessage } from '../errors.ts';
import type { RouterEvents } from '../events.ts';
import type { ChangeEvent } from '../model/change-event.ts';
import { AbortedError, retry, type RetryPolicy } from '../retry/retrier.ts';
import type { Sink, SinkResult } from '../sink/sink.ts';

/** An item that failed for good, with the error that decided it. */
export interface SinkWriteFailure<T> {
  readonly item: T;
  readonly error: CdcError;
  readonly attempts: number;
  /** When this item first failed, and last (ms since epoch). */
  readonly firstFailureAt: number;
  readonly lastFailureAt: number;
}

export interface SinkWriteOptions<T> {
  readonly retryPolicy: RetryPolicy;
  /** Aborts the retries (shutdown, rebalance): the write then rejects with AbortedError. */
  readonly signal: AbortSignal;
  /** At most this many records per sink write; the items are written in order, chunk after chunk. */
  readonly maxRecords?: number | undefined;
  /** Receives `sink.written` and `sink.retry`. */
  readonly events?: RouterEvents | undefined;
  /** Warns on each retry. */
  readonly logger?: Logger | undefined;
  /** Each item the sink acknowledged, as soon as its result comes back. */
  readonly onWritten?: ((item: T) => void) | undefined;
  /** Each item that failed for good, as soon as that is known. */
  readonly onFailed?: ((failure: SinkWriteFailure<T>) => void) | undefined;
  /** After each write attempt's results were handled (to report what is finished meanwhile). */
  readonly onAttempt?: (() => void) | undefined;
}

/**
 * The one way records are written to a sink, used by the pipeline and by dead-letter replay.
 * A throw that is not a SinkError is normalized to a permanent one; a result count that does not
 * match the batch is a permanent failure of the whole write. Records answered with a retriable
 * failure are written again (alone, in order) until they succeed or the retry policy gives up;
 * each then fails with its own last error. A permanent failure of the whole write is bisected: the
 * halves are written again, in order, until the records that cause it are alone, so one record the
 * sink cannot even encode (say JSON nested too deep) fails alone and the rest is written.
 *
 * Resolves once every item is written or failed (reported through the hooks); rejects only with
 * AbortedError.
 */
export async function writeToSink<T>(
  sink: Sink,
  items: readonly T[],
  eventOf: (item: T) => ChangeEvent,
  options: SinkWriteOptions<T>,
): Promise<void> {
  const step = options.maxRecords ?? items.length;
  for (let start = 0; start < items.length; start += step) {
    await writeChunk(sink, items.slice(start, start + step), eventOf, options);
  }
}

/** A throw from `sink.write` as the SinkError it means. */
function writeThrew(sink: Sink, err: unknown): SinkError {
  return err instanceof SinkError
    ? err
    : new SinkError(sink.name, `write threw: ${errorMessage(err)}`, { code: 'WRITE_THREW', retriable: false, cause: err });
}

async function writeChunk<T>(sink: Sink, chunk: readonly T[], eventOf: (item: T) => ChangeEvent, options: SinkWriteOptions<T>): Promise<void> {
  let pending = chunk;
  const firstFailed = new Map<T, number>();
  // The last retriable error of each record still pending: what it fails with if the retries give up.
  const lastError = new Map<T, CdcError>();
  let partial: SinkError | undefined;
  const fail = (item: T, error: CdcError, attempts: number) => {
    const now = Date.now();
    options.onFailed?.({ item, error, attempts, firstFailureAt: firstFailed.get(item) ?? now, lastFailureAt: now });
  };
  await retry(
    options.retryPolicy,
    async (attempt) => {
      const t0 = performance.now();
      let results: readonly SinkResult[];
      try {
        results = await sink.write(pending.map(eventOf));
      } catch (err) {
        throw writeThrew(sink, err);
      }
      if (results.length !== pending.length) {
        throw new SinkError(sink.name, `returned ${results.length} results for ${pending.length} records`, {
          code: 'RESULT_COUNT',
          retriable: false,
        });
      }
      options.events?.emit('sink.written', { sink: sink.name, records: pending.length, durationMs: performance.now() - t0 });
      const again: T[] = [];
      let firstError: CdcError | undefined;
      results.forEach((r, i) => {
        const item = pending[i]!;
        if (r.ok) options.onWritten?.(item);
        else if (r.error.retriable) {
          again.push(item);
          firstError ??= r.error;
          lastError.set(item, r.error);
          if (!firstFailed.has(item)) firstFailed.set(item, Date.now());
        } else fail(item, r.error, attempt + 1);
      });
      pending = again;
      options.onAttempt?.();
      if (again.length > 0) {
        throw (partial = new SinkError(sink.name, `${again.length} record(s) failed; first: ${firstError?.message}`, {
          code: 'PARTIAL_RETRIABLE',
          retriable: true,
          cause: firstError,
        }));
      }
    },
    {
      signal: options.signal,
      onRetry: (error, attempt, delayMs) => {
        options.events?.emit('sink.retry', { sink: sink.name, attempt, delayMs, error });
        options.logger?.warn({ sink: sink.name, attempt, delayMs, err: error }, 'sink write failed, retrying');
      },
    },
  ).catch(async (err: unknown) => {
    if (err instanceof AbortedError) throw err;
    const error =
      err instanceof CdcError ? err : new SinkError(sink.name, errorMessage(err), { code: 'WRITE_FAILED', retriable: false, cause: err });
    if (!error.retriable && pending.length > 1) {
      const half = Math.ceil(pending.length / 2);
      const rest = pending;
      await writeChunk(sink, rest.slice(0, half), eventOf, options);
      await writeChunk(sink, rest.slice(half), eventOf, options);
      return;
    }
    // A single record, or a retriable failure past the retry deadline: it failed with this error
    // (records a partial write left pending, with their own).
    for (const item of pending) fail(item, (err === partial ? lastError.get(item) : undefined) ?? error, 1);
  });
}
