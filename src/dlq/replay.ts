import type { Logger } from 'pino';
import { buildSinks } from '../compose/sinks.ts';
import type { Config } from '../config/load.ts';
import { decodingFromConfig } from '../decode/avro.ts';
import { CdcError, errorMessage } from '../errors.ts';
import type { ChangeEvent, RawRecord } from '../model/change-event.ts';
import { RouterEvents } from '../events.ts';
import { encodePosition } from '../model/position.ts';
import { prepareRecord } from '../pipeline/prepare-record.ts';
import { writeToSink } from '../pipeline/sink-write.ts';
import { policyFromConfig, retry } from '../retry/retrier.ts';
import { createRouter } from '../route/router.ts';
import type { Sink } from '../sink/sink.ts';
import type { DeadLetterEntry, DeadLetterQueue } from './dead-letter-queue.ts';

export interface ReplayOptions {
  /** Write to this sink instead of the ones the entry failed (or its route's). */
  readonly sink?: string | undefined;
  /** Decode, route and transform, say what would be written; write and mark nothing. */
  readonly dryRun?: boolean | undefined;
}

export interface ReplayResult {
  readonly id: string;
  /**
   * replayed: written to every target sink (and marked replayed); dropped: today's chain makes
   * nothing of it (filtered, unrouted, a tombstone), marked replayed; failed: still fails, stays open.
   */
  readonly outcome: 'replayed' | 'dropped' | 'failed';
  readonly dryRun: boolean;
  readonly sinks: readonly string[];
  readonly table: string | undefined;
  readonly op: string | undefined;
  readonly position: string | undefined;
  /** Why it was dropped, or why it failed. */
  readonly reason: string | undefined;
  readonly code: string | undefined;
}

export interface Replayer {
  replay(entry: DeadLetterEntry, options?: ReplayOptions): Promise<ReplayResult>;
  /** Closes the sinks it opened. Idempotent. */
  close(): Promise<void>;
}

/** A replay gives a sink this long (retrying retriable failures) before it counts as failed. */
const REPLAY_DEADLINE_MS = 30_000;
/** Replays are not aborted: the retry policy's deadline bounds them. */
const NEVER = new AbortController().signal;

export function recordOf(entry: DeadLetterEntry): RawRecord {
  const c = entry.context;
  return {
    topic: c.topic,
    partition: c.partition,
    offset: c.offset,
    timestamp: c.timestamp,
    key: entry.key,
    value: entry.value,
    headers: entry.headers,
  };
}

/**
 * Runs dead-lettered records through today's decoder, routes and transforms (built from the config
 * as the service builds them, through the pipeline's own prepareRecord) and writes each only to the
 * sinks that failed it: the entry's sink for a sink-stage failure, else every sink of its route.
 * Sinks refuse stale writes, so replaying a change older than what a sink holds is harmless.
 */
export function createReplayer(config: Config, deps: { readonly dlq: DeadLetterQueue; readonly logger: Logger; readonly events?: RouterEvents }): Replayer {
  const log = deps.logger.child({ component: 'dlq-replay' });
  // Wrapped as the service wraps them (rate limit, write combining, circuit breaker).
  const { sinks } = buildSinks(config, { logger: deps.logger, events: deps.events ?? new RouterEvents() });
  const router = createRouter(config.routes, sinks);
  // As the service decodes: an Avro entry is replayed through the configured schema registry.
  const decoding = decodingFromConfig(config, log);
  const decoder = decoding.decoder;
  const started = new Map<string, Promise<void>>();
  const policy = { ...policyFromConfig(config.retry), deadlineMs: REPLAY_DEADLINE_MS };
  let closing: Promise<void> | undefined;

  // Only the sinks a replay writes to are connected, each once.
  const start = (sink: Sink) => {
    let p = started.get(sink.name);
    if (!p) started.set(sink.name, (p = sink.start()));
    return p;
  };

  async function write(sink: Sink, event: ChangeEvent): Promise<void> {
    await start(sink);
    let failure: CdcError | undefined;
    await writeToSink(sink, [event], (e) => e, { retryPolicy: policy, signal: NEVER, onFailed: (f) => (failure = f.error) });
    if (failure) throw failure;
  }

  return {
    async replay(entry, options = {}) {
      const dryRun = options.dryRun === true;
      const base = { id: entry.id, dryRun, table: entry.context.table, op: undefined, position: undefined, code: undefined };
      const failed = (sinkNames: readonly string[], err: unknown, extra: Partial<ReplayResult> = {}): ReplayResult => ({
        ...base,
        ...extra,
        outcome: 'failed',
        sinks: sinkNames,
        reason: errorMessage(err),
        code: err instanceof CdcError ? err.code : undefined,
      });

      const record = recordOf(entry);
      if (decoding.prepare) {
        // The schemas an Avro entry names; a registry that does not answer leaves the entry to fail
        // with SCHEMA_REGISTRY_UNAVAILABLE below (kept in the queue, replayable later).
        const prepare = decoding.prepare;
        await retry(policy, () => prepare([record], NEVER)).catch((err: unknown) => log.warn({ id: entry.id, err }, 'schema registry did not answer'));
      }
      const prepared = prepareRecord(record, { decoder, router, unrouted: config.unrouted });
      if (prepared.kind === 'failed') return failed([], prepared.error, { table: prepared.table?.id ?? entry.context.table });
      let outcome: ReplayResult;
      if (prepared.kind === 'skipped') {
        outcome = { ...base, table: prepared.table?.id ?? entry.context.table, outcome: 'dropped', sinks: [], reason: prepared.reason };
      } else {
        const { event, route } = prepared;
        const c = entry.context;
        const names = options.sink ? [options.sink] : c.stage === 'sink' && c.sink ? [c.sink] : route.sinks.map((s) => s.name);
        const described = { table: event.table.id, op: event.op, position: encodePosition(event.position) };
        const missing = names.find((n) => !sinks.has(n));
        if (missing !== undefined) {
          return failed(names, new Error(`sink ${missing} is not in the config (choose one with --sink)`), described);
        }
        if (!dryRun) {
          for (const name of names) {
            try {
              await write(sinks.get(name)!, event);
            } catch (err) {
              log.warn({ id: entry.id, sink: name, err }, 'replay failed');
              return failed(names, err, described);
            }
          }
        }
        outcome = { ...base, ...described, outcome: 'replayed', sinks: names, reason: undefined };
      }
      if (!dryRun) {
        try {
          await deps.dlq.mark(entry.id, 'replayed');
        } catch (err) {
          return failed(outcome.sinks, new Error(`written, but not marked replayed: ${errorMessage(err)}`), outcome);
        }
      }
      return outcome;
    },
    close() {
      return (closing ??= (async () => {
        const results = await Promise.allSettled([...sinks.values()].map((s) => s.close()));
        for (const r of results) if (r.status === 'rejected') log.warn({ err: r.reason }, 'sink close failed');
      })());
    },
  };
}
