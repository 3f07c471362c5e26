import type { Logger } from 'pino';
import type { CdcError } from '../errors.ts';
import { createOutcomeTally, type RouterEvents } from '../events.ts';
import type { ChangeEvent, RawRecord } from '../model/change-event.ts';
import { PartitionTracker } from '../commit/offset-tracker.ts';
import type { Decoder } from '../decode/debezium.ts';
import { AbortedError, retry, type RetryPolicy } from '../retry/retrier.ts';
import type { Router } from '../route/router.ts';
import type { Sink } from '../sink/sink.ts';
import type { BatchControl, FailureHandler, RecordFailure } from './contracts.ts';
import { prepareRecord } from './prepare-record.ts';
import { writeToSink } from './sink-write.ts';

/** Records decoded between two yields to the event loop. */
const YIELD_EVERY = 256;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

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
  // --- avro: optional preparation before decode (src/decode/avro.ts) ---
  /**
   * Asynchronous work a batch needs before its synchronous decode (the Avro schemas its records
   * name, from the registry). A retriable failure is retried with `retryPolicy` under the batch's
   * signal, nothing committed meanwhile; if the retries give up (`deadlineMs`), decoding goes on and
   * the records that could not be prepared fail one by one (the decoder says why).
   */
  readonly prepare?: ((records: readonly RawRecord[], signal: AbortSignal) => Promise<void>) | undefined;
  // --- end avro ---
}

/** Failed records by batch index: one failure per sink that refused it (one, sink undefined, before the sinks). */
type Failures = Map<number, RecordFailure[]>;

function addFailure(failures: Failures, index: number, failure: RecordFailure): void {
  const list = failures.get(index);
  if (list) list.push(failure);
  else failures.set(index, [failure]);
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

  function writeSink(
    sink: Sink,
    items: readonly Pending[],
    tracker: PartitionTracker,
    offsets: readonly bigint[],
    failures: Failures,
    records: readonly RawRecord[],
    control: BatchControl,
    tally: ReturnType<typeof createOutcomeTally>,
  ): Promise<void> {
    return writeToSink(sink, items, (p) => p.event, {
      retryPolicy: deps.retryPolicy,
      signal: control.signal,
      maxRecords: deps.maxBatchSize,
      events: deps.events,
      logger: log,
      onWritten: (p) => {
        tracker.ack(offsets[p.index]!);
        tally.add(p.event.table.id, p.event.op, sink.name, 'written');
      },
      onFailed: ({ item: p, error, attempts, firstFailureAt, lastFailureAt }) =>
        addFailure(failures, p.index, {
          record: records[p.index]!,
          error,
          sink: sink.name,
          table: p.event.table.id,
          attempts,
          firstFailureAt,
          lastFailureAt,
        }),
      onAttempt: () => {
        const point = tracker.commitPoint();
        if (point !== undefined) control.progress(point);
      },
    });
  }

  async function process(records: readonly RawRecord[], control: BatchControl): Promise<BatchOutcome> {
    const t0 = performance.now();
    const first = records[0];
    if (!first) return { commitOffset: undefined, halted: undefined, aborted: false };
    // --- avro: optional preparation before decode ---
    const prepare = deps.prepare;
    if (prepare) {
      const where = { topic: first.topic, partition: first.partition };
      try {
        await retry(deps.retryPolicy, () => prepare(records, control.signal), {
          signal: control.signal,
          onRetry: (err, attempt, delayMs) => log.warn({ ...where, attempt, delayMs, err }, 'batch preparation failed, retrying'),
        });
      } catch (err) {
        if (err instanceof AbortedError) return { commitOffset: undefined, halted: undefined, aborted: true };
        log.error({ ...where, err }, 'batch preparation failed for good; its records fail one by one');
      }
    }
    // --- end avro ---
    const ref = { topic: first.topic, partition: first.partition };
    deps.events.emit('batch.started', { ...ref, records: records.length });
    // Metrics, aggregated per batch: outcome counts, and per record the op and timestamps.
    const tally = createOutcomeTally();
    const ops: string[] = new Array<string>(records.length);
    const appendMs = Float64Array.from(records, (r) => r.timestamp);
    const sourceMs = new Float64Array(records.length).fill(NaN);
    const tracker = new PartitionTracker();
    const offsets = records.map((r) => BigInt(r.offset));
    const failures: Failures = new Map();
    const perSink = new Map<Sink, Pending[]>();
    let changes = 0;

    for (let index = 0; index < records.length; index++) {
      // Decoding is synchronous: a large batch yields now and then so that other partitions' sink
      // replies are not held up behind it (each sink round trip waits for a free event loop).
      if (index > 0 && index % YIELD_EVERY === 0) await yieldToEventLoop();
      const record = records[index]!;
      const offset = offsets[index]!;
      const prepared = prepareRecord(record, deps);
      if (prepared.kind === 'change' || prepared.table !== undefined) changes++;
      if (prepared.kind === 'failed') {
        tracker.track(offset, 1);
        const now = Date.now();
        const error = prepared.error;
        const table = prepared.table?.id;
        ops[index] = prepared.op ?? '';
        addFailure(failures, index, { record, error, sink: undefined, table, attempts: 1, firstFailureAt: now, lastFailureAt: now });
        deps.events.emit('record.failed', { ...ref, offset: record.offset, error });
        continue;
      }
      if (prepared.kind === 'skipped') {
        tracker.track(offset, 0);
        const outcome = prepared.reason === 'filtered' ? 'filtered' : 'skipped';
        tally.add(prepared.table?.id ?? '', prepared.op ?? prepared.reason, '', outcome);
        deps.events.emit('record.skipped', { ...ref, offset: record.offset, reason: prepared.reason, heartbeatMs: prepared.heartbeatMs });
        continue;
      }
      const { event, decoded, route } = prepared;
      ops[index] = event.op;
      sourceMs[index] = event.source.tsMs ?? NaN;
      tracker.track(offset, route.sinks.length + route.views.length);
      const enqueue = (sink: Sink, e: ChangeEvent) => {
        let list = perSink.get(sink);
        if (!list) perSink.set(sink, (list = []));
        list.push({ index, event: e });
      };
      for (const sink of route.sinks) enqueue(sink, event);
      for (const view of route.views) enqueue(view, decoded);
    }

    let aborted = false;
    const writes = [...perSink].map(([sink, items]) =>
      writeSink(sink, items, tracker, offsets, failures, records, control, tally),
    );
    for (const r of await Promise.allSettled(writes)) {
      if (r.status === 'rejected') {
        if (r.reason instanceof AbortedError) aborted = true;
        else throw r.reason;
      }
    }

    // Failures in offset order: park each (dead-letter) or halt the partition at the first that cannot be.
    // A record refused by several sinks has one failure per sink; it is finished once all are parked.
    let halted: BatchOutcome['halted'];
    if (!aborted) {
      failed: for (const index of [...failures.keys()].sort((a, b) => a - b)) {
        for (const failure of failures.get(index)!) {
          if (failure.sink !== undefined) {
            deps.events.emit('record.failed', { ...ref, offset: failure.record.offset, error: failure.error });
          }
          let parked: boolean;
          try {
            parked = await deps.onFailure(failure, control.signal);
          } catch (err) {
            // Shutdown or rebalance while the handler waited: commit only what came before.
            if (!(err instanceof AbortedError)) throw err;
            aborted = true;
            break failed;
          }
          tally.add(failure.table ?? '', ops[index] ?? '', failure.sink ?? '', parked ? 'dead_lettered' : 'failed');
          if (!parked) {
            halted = { offset: failure.record.offset, error: failure.error };
            break failed;
          }
        }
        tracker.finish(offsets[index]!);
      }
    }
    deps.events.emit('batch.processed', {
      ...ref,
      records: records.length,
      changes,
      durationMs: performance.now() - t0,
      outcomes: tally.list(),
      timings: { offsets, appendMs, sourceMs },
    });
    return { commitOffset: tracker.commitPoint(), halted, aborted };
  }

  return { process };
}

export type BatchProcessor = ReturnType<typeof createBatchProcessor>;
