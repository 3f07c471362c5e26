import { EventEmitter } from 'node:events';
import type { CdcError, ErrorStage } from './errors.ts';

export interface PartitionRef {
  readonly topic: string;
  readonly partition: number;
}

// --- metrics (src/metrics): per-batch breakdowns, so that nothing is emitted per record ---

/** What became of a record, for one sink ('' where no sink was involved). */
export type RecordOutcome = 'written' | 'filtered' | 'skipped' | 'dead_lettered' | 'failed';

/**
 * Records of one batch that ended the same way. `op` is the change's op (c u d r t), or the record
 * kind when it is not a change (tombstone, heartbeat, transaction); '' (and table '') when it did not decode.
 */
export interface OutcomeCount {
  readonly table: string;
  readonly op: string;
  readonly sink: string;
  readonly outcome: RecordOutcome;
  readonly count: number;
}

/** Counts outcomes over a batch; the emitter sends `list()` once per batch. */
export function createOutcomeTally() {
  type Entry = { table: string; op: string; sink: string; outcome: RecordOutcome; count: number };
  const counts = new Map<string, Entry>();
  // A batch is mostly one table and op: the previous entry usually matches, no key to build.
  let last: Entry | undefined;
  return {
    add(table: string, op: string, sink: string, outcome: RecordOutcome, n = 1): void {
      if (last && last.table === table && last.op === op && last.sink === sink && last.outcome === outcome) {
        last.count += n;
        return;
      }
      const key = `${table}\u0000${op}\u0000${sink}\u0000${outcome}`;
      last = counts.get(key);
      if (last) last.count += n;
      else counts.set(key, (last = { table, op, sink, outcome, count: n }));
    },
    list: (): readonly OutcomeCount[] => [...counts.values()],
  };
}

/**
 * Per record of a batch, in offset order: its offset, Kafka timestamp and the source's ts_ms (NaN
 * when it has none), for end-to-end latency once its offset is committed. Read-only for listeners.
 */
export interface BatchTimings {
  readonly offsets: readonly bigint[];
  readonly appendMs: Float64Array;
  readonly sourceMs: Float64Array;
}

export type CircuitState = 'closed' | 'half-open' | 'open';
// --- end metrics ---

/** Typed events of a running router; metrics, the progress display and tests listen to them. */
export interface RouterEventMap {
  /** A batch entered the pipeline (metrics: records in flight until its `batch.processed`). */
  'batch.started': PartitionRef & { records: number };
  'batch.processed': PartitionRef & {
    records: number;
    changes: number;
    durationMs: number;
    /** Metrics: outcome counts by table, op and sink, and per-record timestamps (absent when not counted). */
    outcomes?: readonly OutcomeCount[];
    timings?: BatchTimings;
  };
  'batch.committed': PartitionRef & { offset: string; durationMs: number };
  'record.failed': PartitionRef & { offset: string; error: CdcError };
  /** `heartbeatMs`: a Debezium heartbeat's time (views move their watermarks by it). */
  'record.skipped': PartitionRef & {
    offset: string;
    reason: 'unrouted' | 'filtered' | 'tombstone' | 'heartbeat' | 'transaction';
    heartbeatMs?: number | undefined;
  };
  'partition.halted': PartitionRef & { offset: string; error: CdcError };
  /** A failed record was stored in the dead-letter queue (`id` there) and may be committed past. */
  'record.dead-lettered': PartitionRef & { offset: string; id: string; stage: ErrorStage; sink: string | undefined; error: CdcError };
  'sink.written': { sink: string; records: number; durationMs: number };
  'sink.retry': { sink: string; attempt: number; delayMs: number; error: unknown };
  /** A write waited for the sink's rate_limit (emitted by the rate limiter; metrics sum the wait). */
  'sink.throttled': { sink: string; records: number; waitedMs: number };
  /** A sink's circuit breaker changed state (emitted by the breaker; metrics gauge it, 0/1/2). */
  'sink.circuit': { sink: string; state: CircuitState };
  'group.joined': { memberId: string; assignment: Record<string, number[]> };
  /** A batch of a view's input was applied to its state in one transaction. */
  /** `late`: changes too late for their window (written to the view's late sink, or among `failed`: dead-lettered). */
  'view.applied': { view: string; applied: number; skipped: number; failed: number; late: number; results: number; durationMs: number };
  /** Results reached their sink: acknowledged out of the view's outbox, or committed with the state transaction that wrote them. */
  'view.delivered': { view: string; results: number };
  /** The output sink refused a result for good; it was logged with its content and taken out of the outbox (or left out of the state transaction). */
  'view.result-failed': { view: string; sink: string; error: CdcError };
}

export type RouterEventName = keyof RouterEventMap;

/** EventEmitter with the payload types above; emit and on check names and payloads. */
export class RouterEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<K extends RouterEventName>(name: K, payload: RouterEventMap[K]): void {
    this.emitter.emit(name, payload);
  }

  on<K extends RouterEventName>(name: K, listener: (payload: RouterEventMap[K]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  /** Resolves with the first payload that satisfies the predicate. */
  waitFor<K extends RouterEventName>(
    name: K,
    predicate: (payload: RouterEventMap[K]) => boolean = () => true,
    timeoutMs = 60_000,
  ): Promise<RouterEventMap[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name}`));
      }, timeoutMs);
      const off = this.on(name, (p) => {
        if (!predicate(p)) return;
        clearTimeout(timer);
        off();
        resolve(p);
      });
    });
  }
}
