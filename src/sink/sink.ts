import type pg from 'pg';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { CdcError } from '../errors.ts';
import type { ChangeEvent } from '../model/change-event.ts';

/**
 * The outcome of one record of a batch. A stale write that a sink refused counts as ok. Sinks fail a
 * record with a SinkError; a view (a sink of its input) with the error of the stage that failed.
 */
export type SinkResult = { readonly ok: true } | { readonly ok: false; readonly error: CdcError };

export const OK: SinkResult = Object.freeze({ ok: true });

/**
 * The sink contract: start (connect), write a batch, close. `write` resolves with one result per
 * record, in the batch's order; it rejects only when the whole batch failed in transport, with a
 * SinkError saying whether that is retriable. `close` may be called more than once.
 */
export interface Sink {
  readonly name: string;
  readonly kind: string;
  start(): Promise<void>;
  write(batch: readonly ChangeEvent[]): Promise<readonly SinkResult[]>;
  close(): Promise<void>;
  /** A PostgreSQL sink can also write inside a transaction someone else holds open on its database. */
  readonly inTransaction?: InTransactionWriter;
}

/**
 * Writes into a transaction the caller opened on the sink's own database (a view's state
 * transaction), so that the writes commit or roll back with the caller's. Results as `Sink.write`;
 * the caller's transaction stays usable after per-record failures (the sink uses savepoints). A
 * rejection (a SinkError) leaves it for the caller to roll back; retriable: the whole transaction is
 * worth another try.
 */
export interface InTransactionWriter {
  /** The database it writes to, as `postgresDatabase()` (src/sink/postgres-database.ts) names it. */
  readonly database: string;
  write(client: pg.ClientBase, batch: readonly ChangeEvent[]): Promise<readonly SinkResult[]>;
}

export interface SinkContext {
  readonly logger: Logger;
}

export interface SinkFactory<S extends z.ZodTypeAny = z.ZodTypeAny, K extends string = string> {
  readonly kind: K;
  /** Schema of the sink's config block (without `kind`). */
  readonly configSchema: S;
  create(name: string, config: z.infer<S>, context: SinkContext): Sink;
}

export function defineSink<S extends z.ZodTypeAny, const K extends string>(factory: SinkFactory<S, K>): SinkFactory<S, K> {
  return factory;
}

/** Makes `close()` idempotent: every call gets the promise of the first. */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}
