import type { Logger } from 'pino';
import { CdcError, DecodeError, RouteError, SinkError, TransformError, errorMessage } from '../errors.ts';
import { createOutcomeTally, type RouterEventMap, type RouterEvents } from '../events.ts';
import type { ChangeEvent, Op, RawRecord, TableId } from '../model/change-event.ts';
import { PartitionTracker } from '../commit/offset-tracker.ts';
import type { Decoder } from '../decode/debezium.ts';
import { AbortedError, retry, type RetryPolicy } from '../retry/retrier.ts';
import type { Route, Router } from '../route/router.ts';
import type { Sink, SinkResult } from '../sink/sink.ts';

/** Records decoded between two yields to the event loop. */
const YIELD_EVERY = 256;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A record that can never succeed as it is, with where it failed. */
export interface RecordFailure {
  readonly record: RawRecord;
  readonly error: CdcError;
  readonly sink: string | undefined;
  /** The table id, when the record decoded to a change (decode failures have none). */
  readonly table: string | undefined;
  readonly attempts: number;
  /** When this record first failed, and last (ms since epoch). */
  readonly firstFailureAt: number;
  readonly lastFailureAt: number;
}

/**
 * Decides about a failed record: resolve true when it was parked somewhere safe (the dead-letter
 * queue) and may be committed past; false halts its partition at that record. `signal` is the
 * batch's: a handler that waits (a dead-letter queue away) rejects with AbortedError when it fires.
 */
export type FailureHandler = (failure: RecordFailure, signal: AbortSignal) => Promise<boolean>;

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

type SkipReason = RouterEventMap['record.skipped']['reason'];

/** What decode, route and the transform chain make of one record; `table` and `op` once it decoded to a change. */
export type PreparedRecord =
  | { readonly kind: 'change'; readonly event: ChangeEvent; readonly decoded: ChangeEvent; readonly route: Route }
  | {
      readonly kind: 'skipped';
      readonly reason: SkipReason;
      readonly table: TableId | undefined;
      readonly op: Op | undefined;
      readonly heartbeatMs?: number | undefined;
    }
  | { readonly kind: 'failed'; readonly error: CdcError; readonly table: TableId | undefined; readonly op: Op | undefined };

/**
 * Everything before the sinks, for one record: decode, route, transforms. Shared by the pipeline
 * and `dlq replay`, so that a replay sees exactly what the live service would.
 */
export function prepareRecord(
  record: RawRecord,
  deps: Pick<BatchProcessorDeps, 'decoder' | 'router' | 'unrouted'>,
): PreparedRecord {
  let decoded;
  try {
    decoded = deps.decoder.decode(record);
  } catch (err) {
    const error = err instanceof CdcError ? err : new DecodeError(errorMessage(err), { code: 'DECODE_FAILED', at: record, cause: err });
    return { kind: 'failed', error, table: undefined, op: undefined };
  }
  if (decoded.kind === 'heartbeat') return { kind: 'skipped', reason: 'heartbeat', table: undefined, op: undefined, heartbeatMs: decoded.tsMs };
  if (decoded.kind !== 'change') return { kind: 'skipped', reason: decoded.kind, table: undefined, op: undefined };
  const table = decoded.table;
  const op = decoded.op;
  const route = deps.router.route(table);
  if (!route) {
    return deps.unrouted === 'fail'
      ? { kind: 'failed', error: new RouteError(`no route for table ${table.id}`, { code: 'UNROUTED', at: record }), table, op }
      : { kind: 'skipped', reason: 'unrouted', table, op };
  }
  let event: ChangeEvent | null;
  try {
    event = route.apply(decoded);
  } catch (err) {
    const error =
      err instanceof CdcError
        ? err
        : new TransformError(route.table, errorMessage(err), { code: 'TRANSFORM_FAILED', at: record, cause: err });
    return { kind: 'failed', error, table, op };
  }
  if (event === null) {
    // Views read the table as it is: the route's transforms shape what its sinks get, not what views count.
    if (route.views.length > 0) return { kind: 'change', event: decoded, decoded, route: { ...route, sinks: [] } };
    return { kind: 'skipped', reason: 'filtered', table, op };
  }
  return { kind: 'change', event, decoded, route };
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
    failures: Failures,
    records: readonly RawRecord[],
    control: BatchControl,
    tally: ReturnType<typeof createOutcomeTally>,
  ): Promise<void> {
    for (let start = 0; start < items.length; start += deps.maxBatchSize) {
      await writeChunk(items.slice(start, start + deps.maxBatchSize));
    }

    /**
     * One sink write with retries. A permanent failure of the whole write is bisected: the halves are
     * written again, in order, until the records that cause it are alone, so one record the sink
     * cannot even encode (say JSON nested too deep) fails alone and the rest of the batch is written.
     */
    async function writeChunk(chunk: readonly Pending[]): Promise<void> {
      let pending = chunk;
      const firstFailed = new Map<number, number>();
      const failure = (p: Pending, error: CdcError, attempts: number): RecordFailure => {
        const now = Date.now();
        return {
          record: records[p.index]!,
          error,
          sink: sink.name,
          table: p.event.table.id,
          attempts,
          firstFailureAt: firstFailed.get(p.index) ?? now,
          lastFailureAt: now,
        };
      };
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
          let firstError: CdcError | undefined;
          results.forEach((r, i) => {
            const p = pending[i]!;
            if (r.ok) {
              tracker.ack(offsets[p.index]!);
              tally.add(p.event.table.id, p.event.op, sink.name, 'written');
            } else if (r.error.retriable) {
              again.push(p);
              firstError ??= r.error;
              if (!firstFailed.has(p.index)) firstFailed.set(p.index, Date.now());
            } else addFailure(failures, p.index, failure(p, r.error, attempt + 1));
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
      ).catch(async (err: unknown) => {
        if (err instanceof AbortedError) throw err;
        const error =
          err instanceof CdcError
            ? err
            : new SinkError(sink.name, errorMessage(err), { code: 'WRITE_FAILED', retriable: false, cause: err });
        if (!error.retriable && pending.length > 1) {
          const half = Math.ceil(pending.length / 2);
          const rest = pending;
          await writeChunk(rest.slice(0, half));
          await writeChunk(rest.slice(half));
          return;
        }
        // A single record, or a retriable failure past the retry deadline: it failed with this error.
        for (const p of pending) addFailure(failures, p.index, failure(p, error, 1));
      });
    }
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
