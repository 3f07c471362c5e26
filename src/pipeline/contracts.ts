import type { CdcError } from '../errors.ts';
import type { RawRecord } from '../model/change-event.ts';

/*
 * What the consumer, the batch processor and the failure handlers (dead-letter queue, halting)
 * agree on. Implementations import these; this module imports no implementation.
 */

/** What the consumer hands the handler of one fetched batch, besides its records. */
export interface BatchControl {
  /** Fires on shutdown (after the drain timeout) or when a rebalance takes the partition away: stop retrying, commit nothing more. */
  readonly signal: AbortSignal;
  /**
   * Everything before `offset` is finished: commit it now, while the rest of the batch is still
   * being written (a sink retrying one record must not hold back the commits of those before it).
   */
  progress(offset: bigint): void;
}

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
