import { CdcError, type CdcErrorOptions, type ErrorStage } from '../errors.ts';
import type { RecordFailure } from '../pipeline/contracts.ts';

/** Where an entry stands: open until an operator replays or discards it. */
export type DeadLetterStatus = 'open' | 'replayed' | 'discarded';
export const DEAD_LETTER_STATUSES: readonly DeadLetterStatus[] = ['open', 'replayed', 'discarded'];

/** Why and where a record failed, next to its original bytes. */
export interface DeadLetterContext {
  /** The source record's coordinates and its Kafka timestamp (ms since epoch). */
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly timestamp: number;
  /** decode, route, transform or sink (an error's own stage for anything else). */
  readonly stage: ErrorStage;
  /** The sink that refused it (stage sink only). */
  readonly sink: string | undefined;
  /** Table id (`<schema>.<table>`), when the record decoded that far. */
  readonly table: string | undefined;
  /** The error's class name, e.g. DecodeError. */
  readonly errorClass: string;
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly errorStack: string | undefined;
  readonly attempts: number;
  /** ms since epoch. */
  readonly firstFailureAt: number;
  readonly lastFailureAt: number;
}

/** The original record, byte for byte, and its failure. What `put` stores. */
export interface DeadLetter {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Readonly<Record<string, Buffer | undefined>>;
  readonly context: DeadLetterContext;
}

export interface DeadLetterEntry extends DeadLetter {
  /** Stable and short: `<dlq partition>-<dlq offset>` (Kafka) or the job id (BullMQ). */
  readonly id: string;
  readonly status: DeadLetterStatus;
  /** When the entry was stored, and when its status last changed (ms since epoch). */
  readonly storedAt: number;
  readonly statusAt: number | undefined;
}

export interface DeadLetterFilter {
  readonly table?: string | undefined;
  readonly sink?: string | undefined;
  readonly stage?: string | undefined;
  /** Entries whose last failure is at or after this (ms since epoch). */
  readonly since?: number | undefined;
  /** Default open. */
  readonly status?: DeadLetterStatus | 'all' | undefined;
  /** At most this many, oldest first. */
  readonly limit?: number | undefined;
}

/**
 * The dead-letter contract every backend implements. `put` resolves only once the entry is durably
 * stored (the pipeline commits past the record after that); it rejects with a DeadLetterError saying
 * whether trying again can help. `close` may be called more than once.
 */
export interface DeadLetterQueue {
  readonly kind: string;
  /** Where entries go, for logs: a topic or a queue name. */
  readonly target: string;
  start(): Promise<void>;
  /** Stores a dead letter; resolves with its id. */
  put(letter: DeadLetter): Promise<string>;
  /** Entries matching the filter, oldest first, with their current status. */
  list(filter?: DeadLetterFilter): Promise<DeadLetterEntry[]>;
  get(id: string): Promise<DeadLetterEntry | undefined>;
  /** Records a status change; rejects with code UNKNOWN_ENTRY when there is no such entry. */
  mark(id: string, status: Exclude<DeadLetterStatus, 'open'>): Promise<void>;
  close(): Promise<void>;
}

/** The dead-letter queue itself failed (unreachable, refused the entry, unknown id). */
export class DeadLetterError extends CdcError {
  override readonly stage = 'dlq';
  constructor(message: string, options: CdcErrorOptions) {
    super(`dead-letter queue: ${message}`, options);
  }
}

/** A record failure as a dead letter. */
export function deadLetterOf(failure: RecordFailure): DeadLetter {
  const { record, error } = failure;
  return {
    key: record.key,
    value: record.value,
    headers: record.headers,
    context: {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      timestamp: record.timestamp,
      stage: failure.sink !== undefined ? 'sink' : error.stage,
      sink: failure.sink,
      table: failure.table,
      errorClass: error.name,
      errorCode: error.code,
      errorMessage: error.message,
      errorStack: error.stack,
      attempts: failure.attempts,
      firstFailureAt: failure.firstFailureAt,
      lastFailureAt: failure.lastFailureAt,
    },
  };
}

export function matchesFilter(entry: DeadLetterEntry, filter: DeadLetterFilter): boolean {
  const c = entry.context;
  const status = filter.status ?? 'open';
  return (
    (status === 'all' || entry.status === status) &&
    (filter.table === undefined || c.table === filter.table) &&
    (filter.sink === undefined || c.sink === filter.sink) &&
    (filter.stage === undefined || c.stage === filter.stage) &&
    (filter.since === undefined || c.lastFailureAt >= filter.since)
  );
}

/** Filters, orders oldest first (ties by id) and limits; backends that read everything use it. */
export function selectEntries(entries: Iterable<DeadLetterEntry>, filter: DeadLetterFilter = {}): DeadLetterEntry[] {
  const selected = [...entries]
    .filter((e) => matchesFilter(e, filter))
    .sort((a, b) => a.storedAt - b.storedAt || compareIds(a.id, b.id));
  return filter.limit === undefined ? selected : selected.slice(0, filter.limit);
}

/** Ids are numbers joined by '-': compare them part by part, numerically. */
export function compareIds(a: string, b: string): number {
  const pa = a.split('-');
  const pb = b.split('-');
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    if (x === y) continue;
    if (/^\d+$/.test(x) && /^\d+$/.test(y)) return x.length - y.length || (x < y ? -1 : 1);
    return x < y ? -1 : 1;
  }
  return 0;
}
