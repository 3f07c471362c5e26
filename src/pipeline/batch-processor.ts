import type { Logger } from 'pino';
import { CdcError, DecodeError, RouteError, SinkError, TransformError, errorMessage } from '../errors.ts';
import type { RouterEvents } from '../events.ts';
import type { ChangeEvent, RawRecord } from '../model/change-event.ts';
import { PartitionTracker } from '../commit/offset-tracker.ts';
import type { Decoder } from '../decode/debezium.ts';
import { AbortedError, retry, type RetryPolicy } from '../retry/retrier.ts';
import type { Router } from '../route/router.ts';
import type { Sink, SinkResult } from '../sink/sink.ts';

/** A record that can never succeed as it is, with where it failed. */
export interface RecordFailure {
  readonly record: RawRecord;
  readonly error: CdcError;
  readonly sink: string | undefined;
  readonly attempts: number;
}

/**
 * Decides about a failed record: resolve true when it was parked somewhere safe (the dead-letter
 * queue) and may be committed past; false halts its partition at that record.
 */
export type FailureHandler = (failure: RecordFailure) => Promise<boolean>;

export interface BatchControl {
  /** Fires on shutdown or when the partition is revoked: stop retrying, commit nothing more. */
  readonly signal: AbortSignal;
  /** Reports that everything before `offset` is finished, while the batch goes on. */
  progress(offset: bigint): void;
}

export interface BatchOutcome {
  /** Offset to commit (next to read), or undefined when nothing new finished. */
  readonly commitOffset: bigint | undefined;
  /** The record the partition halted at, when a failure was not parked. */
  readonly halted: { readonly offset: string; readonly error: CdcError } | undefined;
  readonly aborted: boolean;
}

export interface BatchProcessorDeps {
  readonly decoder: Decoder;
  readonly router: Router;
  readonly unrouted: 'skip' | 'fail';
  readonly maxBatchSize: number;
  readonly retryPolicy: RetryPolicy;
  readonly events: RouterEvents;
  readonly logger: Logger;
  readonly onFailure: FailureHandler;
}

interface Pending {
  readonly index: number;
  readonly event: ChangeEvent;
}

/**
 * Runs one fetched batch of one partition through decode, route, transforms and the sinks, and
 * says how far it may be committed. Sinks are written in parallel; each sink receives its records
 * in partition order, so changes to one key reach a sink in order.
 */
export function createBatchProcessor(deps: BatchProcessorDeps) {
  const log = deps.logger.child({ component: 'pipeline' });

  async function writeSink(
    sink: Sink,
    items: readonly Pending[],
    tracker: PartitionTracker,
    offsets: readonly bigint[],
    failures: Map<number, RecordFailure>,
    records: readonly RawRecord[],
    control: BatchControl,
  ): Promise<void> {
    for (let start = 0; start < items.length; start += deps.maxBatchSize) {
      let pending = items.slice(start, start + deps.maxBatchSize);
      await retry(
        deps.retryPolicy,
        async (attempt) => {
          const t0 = performance.now();
          let results: readonly SinkResult[];
          try {
            results = await sink.write(pending.map((p) => p.event));
          } catch (err) {
            throw err instanceof SinkError
              ? err
              : new SinkError(sink.name, `write threw: ${errorMessage(err)}`, { code: 'WRITE_THREW', retriable: false, cause: err });
          }
          if (results.length !== pending.length) {
            throw new SinkError(sink.name, `returned ${results.length} results for ${pending.length} records`, {
              code: 'RESULT_COUNT',
              retriable: false,
            });
          }
          deps.events.emit('sink.written', { sink: sink.name, records: pending.length, durationMs: performance.now() - t0 });
          const again: Pending[] = [];
          let firstError: SinkError | undefined;
          results.forEach((r, i) => {
            const p = pending[i]!;
            if (r.ok) tracker.ack(offsets[p.index]!);
            else if (r.error.retriable) {
              again.push(p);
              firstError ??= r.error;
            }
            else failures.set(p.index, { record: records[p.index]!, error: r.error, sink: sink.name, attempts: attempt + 1 });
          });
          pending = again;
          const point = tracker.commitPoint();
          if (point !== undefined) control.progress(point);
          if (again.length > 0) {
            throw new SinkError(sink.name, `${again.length} record(s) failed; first: ${firstError?.message}`, {
              code: 'PARTIAL_RETRIABLE',
              retriable: true,
              cause: firstError,
            });
          }
        },
        {
          signal: control.signal,
          onRetry: (error, attempt, delayMs) => {
            deps.events.emit('sink.retry', { sink: sink.name, attempt, delayMs, error });
            log.warn({ sink: sink.name, attempt, delayMs, err: error }, 'sink write failed, retrying');
          },
        },
      ).catch((err: unknown) => {
        if (err instanceof AbortedError) throw err;
        // A permanent whole-batch failure: every record still pending failed with it.
        const error =
          err instanceof CdcError
            ? err
            : new SinkError(sink.name, errorMessage(err), { code: 'WRITE_FAILED', retriable: false, cause: err });
        for (const p of pending) {
          if (!failures.has(p.index)) failures.set(p.index, { record: records[p.index]!, error, sink: sink.name, attempts: 1 });
        }
      });
    }
  }

  async function process(records: readonly RawRecord[], control: BatchControl): Promise<BatchOutcome> {
    const t0 = performance.now();
    const first = records[0];
    if (!first) return { commitOffset: undefined, halted: undefined, aborted: false };
    const ref = { topic: first.topic, partition: first.partition };
    const tracker = new PartitionTracker();
    const offsets = records.map((r) => BigInt(r.offset));
    const failures = new Map<number, RecordFailure>();
    const perSink = new Map<Sink, Pending[]>();
    let changes = 0;

    records.forEach((record, index) => {
      const offset = offsets[index]!;
      const fail = (error: CdcError) => {
        tracker.track(offset, 1);
        failures.set(index, { record, error, sink: undefined, attempts: 1 });
        deps.events.emit('record.failed', { ...ref, offset: record.offset, error });
      };
      let decoded;
      try {
        decoded = deps.decoder.decode(record);
      } catch (err) {
        fail(err instanceof CdcError ? err : new DecodeError(errorMessage(err), { code: 'DECODE_FAILED', at: record, cause: err }));
        return;
      }
      if (decoded.kind !== 'change') {
        tracker.track(offset, 0);
        deps.events.emit('record.skipped', { ...ref, offset: record.offset, reason: decoded.kind });
        return;
      }
      changes++;
      const route = deps.router.route(decoded.table);
      if (!route) {
        if (deps.unrouted === 'fail') {
          fail(new RouteError(`no route for table ${decoded.table.id}`, { code: 'UNROUTED', at: record }));
        } else {
          tracker.track(offset, 0);
          deps.events.emit('record.skipped', { ...ref, offset: record.offset, reason: 'unrouted' });
        }
        return;
      }
      let event: ChangeEvent | null;
      try {
        event = route.apply(decoded);
      } catch (err) {
        fail(
          err instanceof CdcError
            ? err
            : new TransformError(route.table, errorMessage(err), { code: 'TRANSFORM_FAILED', at: record, cause: err }),
        );
        return;
      }
      if (event === null) {
        tracker.track(offset, 0);
        deps.events.emit('record.skipped', { ...ref, offset: record.offset, reason: 'filtered' });
        return;
      }
      tracker.track(offset, route.sinks.length);
      for (const sink of route.sinks) {
        let list = perSink.get(sink);
        if (!list) perSink.set(sink, (list = []));
        list.push({ index, event });
      }
    });

    let aborted = false;
    const writes = [...perSink].map(([sink, items]) =>
      writeSink(sink, items, tracker, offsets, failures, records, control),
    );
    for (const r of await Promise.allSettled(writes)) {
      if (r.status === 'rejected') {
        if (r.reason instanceof AbortedError) aborted = true;
        else throw r.reason;
      }
    }

    // Failures in offset order: park each (dead-letter) or halt the partition at the first that cannot be.
    let halted: BatchOutcome['halted'];
    if (!aborted) {
      for (const index of [...failures.keys()].sort((a, b) => a - b)) {
        const failure = failures.get(index)!;
        if (failure.sink !== undefined) {
          deps.events.emit('record.failed', { ...ref, offset: failure.record.offset, error: failure.error });
        }
        if (await deps.onFailure(failure)) {
          tracker.finish(offsets[index]!);
        } else {
          halted = { offset: failure.record.offset, error: failure.error };
          break;
        }
      }
    }
    deps.events.emit('batch.processed', { ...ref, records: records.length, changes, durationMs: performance.now() - t0 });
    return { commitOffset: tracker.commitPoint(), halted, aborted };
  }

  return { process };
}

export type BatchProcessor = ReturnType<typeof createBatchProcessor>;
