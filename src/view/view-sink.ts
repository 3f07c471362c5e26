import type { Logger } from 'pino';
import type pg from 'pg';
import { CdcError, SinkError, errorMessage } from '../errors.ts';
import type { RouterEvents } from '../events.ts';
import type { ChangeEvent, ColumnSchema } from '../model/change-event.ts';
import { position } from '../model/position.ts';
import { OK, once, type InTransactionWriter, type Sink, type SinkResult } from '../sink/sink.ts';
import { advanceTime, applyBatch, type HeartbeatTick, type ResultPayload } from './apply-batch.ts';
import { RowRaceError } from './core/errors.ts';
import type { StateStore } from './state-store.ts';
import { cachedUnreadInputs, type InputLags } from './unread-inputs.ts';
import type { ViewPlan } from './view-plan.ts';

/** Results delivered per output write (at least one outbox row's). */
const DELIVER_CHUNK = 5_000;
/** How often leftovers (a crash between commit and delivery, here or in another instance) are looked for. */
const RELAY_INTERVAL_MS = 2_000;

export interface ViewSinkDeps {
  readonly plan: ViewPlan;
  readonly pool: pg.Pool;
  readonly store: StateStore;
  /** The output sink, as the pipeline built it (write combining, circuit breaker). */
  readonly output: Sink;
  /** The sink of late changes (`late.sink`); without one they are dead-lettered. */
  readonly late?: Sink | undefined;
  /**
   * The writers of the output and late sinks that write into the state transaction itself (a
   * PostgreSQL sink on the state's database): their results skip the outbox.
   */
  readonly inState?: { readonly output?: InTransactionWriter | undefined; readonly late?: InTransactionWriter | undefined };
  readonly events: RouterEvents;
  readonly logger: Logger;
  /** For a windowed view: the group's lag per partition of its input topics, looked up off the write path (see cachedUnreadInputs); without it only partitions read count. */
  readonly inputLags?: InputLags | undefined;
  /** How often the relay looks for leftovers and moves time (default RELAY_INTERVAL_MS). */
  readonly relayIntervalMs?: number;
}

/** The key of a late change in its side output: where it was read. */
export const LATE_KEY_COLUMNS = ['view', 'topic', 'kafka_partition', 'kafka_offset'] as const;

/** A result as a change event of the view's output table (or its late table); its version is its position. */
export function resultEvent(plan: ViewPlan, p: ResultPayload): ChangeEvent {
  const late = p.target === 'late';
  const table = late && plan.late ? plan.late.table : plan.output.table;
  const keyColumns: readonly string[] = late ? LATE_KEY_COLUMNS : plan.keyColumns;
  return {
    kind: 'change',
    op: p.op,
    table,
    // Sinks build row ids from the key's values in order; jsonb (the outbox) keeps its own member order.
    key: Object.fromEntries(keyColumns.map((c) => [c, p.key[c] ?? null])),
    before: null,
    after: p.after,
    source: {
      connector: 'cdc-router',
      name: plan.name,
      db: undefined,
      schema: table.schema,
      table: table.table,
      tsMs: p.tsMs,
      snapshot: undefined,
      raw: { view: plan.name, version: p.version },
    },
    position: position('source', [BigInt(p.version)]),
    tsMs: p.tsMs,
    kafka: { topic: `view:${plan.name}`, partition: 0, offset: p.version, timestamp: p.tsMs },
    columns: p.columns,
  };
}

/** A state transaction's outbox entries and the results in them. */
interface Queued {
  readonly ids: readonly string[];
  readonly payloads: readonly ResultPayload[];
}

/** Attempts of a transaction that a RowRaceError rolled back, before the pipeline's own retry takes over. */
const RACE_ATTEMPTS = 5;

/** Runs a state transaction again when it lost a race for a new row (the other transaction's row is stored now). */
async function retryingRaces<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof RowRaceError) || attempt >= RACE_ATTEMPTS) throw err;
    }
  }
}

function sinkError(name: string, err: unknown): SinkError {
  if (err instanceof SinkError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  // PostgreSQL: connection (08), rollback/deadlock (40), resources (53), shutdown/timeouts (57); sockets.
  const retriable =
    (typeof code === 'string' && (/^(08|40|53|57|58)/.test(code) || /^E[A-Z]+$/.test(code))) ||
    (err instanceof Error && /Connection terminated|timeout|not queryable|Client was closed/i.test(err.message));
  return new SinkError(name, `view state: ${errorMessage(err)}`, { code: 'VIEW_STATE', retriable, cause: err });
}

/**
 * A view as the pipeline sees it: a sink of its input table. A write applies the batch to the state
 * in one transaction; in the same transaction its results are written by their sink when that sink
 * writes into the state's database (`inState`), else put in the outbox, delivered to the sink after
 * the commit. A crash after the commit leaves the results in the outbox: the next write, or the relay
 * of any instance, delivers them; the output's stale-write guard makes a second delivery harmless.
 */
export interface ViewSink extends Sink {
  /** A Debezium heartbeat: moves the clocks of the partitions it vouches for, then the watermark (see advanceTime). */
  heartbeat(beat: HeartbeatTick): Promise<void>;
}

export function createViewSink(deps: ViewSinkDeps): ViewSink {
  const { plan, pool, store, output, events } = deps;
  const name = `view:${plan.name}`;
  const log = deps.logger.child({ component: 'view', view: plan.name });
  let inputColumns: readonly ColumnSchema[] | undefined;
  let relay: NodeJS.Timeout | undefined;
  let draining: Promise<void> | undefined;
  // By target, not by sink: the late side output may name the output's own sink.
  const routes = [
    { late: false, sink: output, inState: deps.inState?.output },
    { late: true, sink: deps.late, inState: deps.inState?.late },
  ] as const;
  // Without one, the outbox holds only leftovers (of a reset, of an earlier config): the relay's ticks deliver them.
  const usesOutbox = routes.some((r) => r.sink && !r.inState);
  const topicsRead = new Set<string>();
  /** Outbox entries may be waiting (at start: a crash before; after an output failure): delivery takes the claiming path until it found none. */
  let leftovers = true;
  /**
   * Outbox entries delivered from memory (deliverOwn) and not deleted yet: the next state
   * transaction deletes them (each id taken by one transaction, given back when it rolls back),
   * else the relay's tick or close. A crash before leaves them to be delivered again, harmlessly.
   */
  let delivered: string[] = [];
  const takeDelivered = (): string[] => {
    const ids = delivered;
    delivered = [];
    return ids;
  };
  async function flushDelivered(): Promise<void> {
    const ids = takeDelivered();
    await store.deleteOutbox(pool, ids).catch((err: unknown) => {
      delivered.push(...ids);
      log.warn({ err }, 'view outbox entries delivered but not deleted; deleted (or delivered again) later');
    });
  }
  const unreadInputs = plan.window && deps.inputLags ? cachedUnreadInputs(deps.inputLags, { logger: log }) : undefined;
  /** Input partitions with records still to read (as last looked up): those the view never read hold its watermark back. */
  const waiting = (): Promise<ReadonlySet<string>> => unreadInputs?.waiting(topicsRead) ?? Promise.resolve(new Set());

  async function inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await pool.connect().catch((err: unknown) => {
      throw sinkError(name, err);
    });
    try {
      store.groupCache.discard(client);
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      store.groupCache.committed(client);
      return out;
    } catch (err) {
      store.groupCache.discard(client);
      await client.query('ROLLBACK').catch(() => undefined);
      throw err instanceof CdcError ? err : sinkError(name, err);
    } finally {
      client.release();
    }
  }

  /** Delivers the outbox oldest first; entries stay locked (and are deleted) only once the output acknowledged them. */
  async function deliverOnce(): Promise<void> {
    // Cleared before the claim: a failure during it, or of a transaction's own delivery, sets it again.
    leftovers = false;
    try {
      // Delivered entries out of the outbox first, so the claim does not deliver them again.
      await flushDelivered();
      await claimAndDeliver();
    } catch (err) {
      leftovers = true;
      throw err;
    }
  }

  async function claimAndDeliver(): Promise<void> {
    for (;;) {
      const more = await inTransaction(async (client) => {
        const { entries, more } = await store.claimOutbox(client, plan.name, DELIVER_CHUNK);
        if (entries.length === 0) return false;
        const payloads = entries.flatMap((e) => e.results as ResultPayload[]);
        await deliverAll(payloads);
        await store.deleteOutbox(
          client,
          entries.map((e) => e.id),
        );
        events.emit('view.delivered', { view: plan.name, results: payloads.length });
        return more;
      });
      if (!more) return;
    }
  }

  /** Outbox results to the sinks they are for (each target's own). */
  async function deliverAll(payloads: readonly ResultPayload[]): Promise<void> {
    for (const { sink, late } of routes) {
      const mine = payloads.filter((p) => (p.target === 'late') === late);
      if (sink && mine.length > 0) await deliverTo(sink, mine);
    }
  }

  /**
   * One sink's share of results (of a claimed chunk, or of a state transaction); a retriable failure
   * throws, rolling back the transaction they are in (the claim: delivered again later, harmlessly).
   */
  async function deliverTo(target: Pick<Sink, 'name' | 'write'>, payloads: readonly ResultPayload[]): Promise<void> {
    const results = await target.write(payloads.map((p) => resultEvent(plan, p)));
    const retry = results.find((r): r is Extract<SinkResult, { ok: false }> => !r.ok && r.error.retriable);
    if (retry) throw retry.error;
    results.forEach((r, i) => {
      if (r.ok) return;
      // Refused for good by the sink (a mapping conflict, say): loud, counted, and out of the outbox.
      log.error({ sink: target.name, result: payloads[i], err: r.error }, 'view result refused by its output sink');
      events.emit('view.result-failed', { view: plan.name, sink: target.name, error: r.error });
    });
  }

  /**
   * Puts a state transaction's results where they go, in that transaction: written by a sink that
   * writes into it, the rest into the outbox. Returns how many of each.
   */
  async function putResults(
    client: pg.PoolClient,
    payloads: readonly ResultPayload[],
    deliveredIds: readonly string[] = [],
  ): Promise<{ written: number; queued: number; entries: Queued }> {
    const queued: ResultPayload[] = [];
    let written = 0;
    for (const route of routes) {
      const mine = payloads.filter((p) => (p.target === 'late') === route.late);
      const writer = route.inState;
      if (!writer || !route.sink) queued.push(...mine);
      else if (mine.length > 0) {
        await deliverTo({ name: route.sink.name, write: (batch) => writer.write(client, batch) }, mine);
        written += mine.length;
      }
    }
    const ids = await store.addToOutbox(client, plan.name, queued, deliveredIds);
    return { written, queued: queued.length, entries: { ids, payloads: queued } };
  }

  /**
   * After its commit: a transaction's own outbox entries, delivered from memory and deleted (no
   * second transaction to claim them and read them back). A relay claiming them meanwhile delivers
   * them twice, which the output's stale-write guard makes harmless. When the output fails, the
   * entries stay, and the claiming path delivers them and any other leftovers from then on.
   * Deleted later (see `delivered`).
   */
  async function deliverOwn(entries: Queued): Promise<void> {
    if (entries.ids.length === 0) return;
    try {
      await deliverAll(entries.payloads);
    } catch (err) {
      leftovers = true;
      throw err instanceof CdcError ? err : sinkError(name, err);
    }
    events.emit('view.delivered', { view: plan.name, results: entries.payloads.length });
    delivered.push(...entries.ids);
  }

  /** Moves the watermark (see advanceTime) and puts the results of the windows it closed where they go, in one transaction. */
  async function advance(beat?: HeartbeatTick): Promise<void> {
    const unread = await waiting();
    const { written } = await inTransaction(async (client) => putResults(client, await advanceTime(client, store, plan, inputColumns, beat, unread)));
    if (written > 0) events.emit('view.delivered', { view: plan.name, results: written });
  }

  function deliver(): Promise<void> {
    draining ??= deliverOnce().finally(() => {
      draining = undefined;
    });
    return draining;
  }

  async function write(batch: readonly ChangeEvent[]): Promise<readonly SinkResult[]> {
    const t0 = performance.now();
    for (const e of batch) {
      if (e.columns) inputColumns = e.columns;
      topicsRead.add(e.kafka.topic);
    }
    const unread = await waiting();
    const deleting = takeDelivered();
    const outcome = await retryingRaces(() =>
      inTransaction(async (client) => {
        const applied = await applyBatch(client, store, plan, batch, inputColumns, unread);
        return { ...applied, ...(await putResults(client, applied.results, deleting)) };
      }),
    ).catch((err: unknown) => {
      delivered.push(...deleting);
      throw err;
    });
    events.emit('view.applied', {
      view: plan.name,
      applied: outcome.applied,
      skipped: outcome.skipped,
      failed: outcome.failures.size,
      late: outcome.late,
      results: outcome.results.length,
      durationMs: performance.now() - t0,
    });
    if (outcome.written > 0) events.emit('view.delivered', { view: plan.name, results: outcome.written });
    if (usesOutbox) {
      if (leftovers) {
        // A delivery already under way may have claimed part of this batch's results: wait for it, then deliver the rest.
        await draining?.catch(() => undefined);
        await deliver();
      } else await deliverOwn(outcome.entries);
    }
    return batch.map((_, i): SinkResult => {
      const error = outcome.failures.get(i);
      return error ? { ok: false, error } : OK;
    });
  }

  return {
    name,
    kind: 'view',
    async start() {
      const client = await pool.connect();
      try {
        await store.ensureSchema(client);
      } finally {
        client.release();
      }
      const tick = () =>
        void (plan.window ? advance() : Promise.resolve())
          .then(() => deliver())
          .catch((err: unknown) => log.warn({ err }, 'view watermark or outbox delivery failed; retried on the next write or tick'));
      tick();
      relay = setInterval(tick, deps.relayIntervalMs ?? RELAY_INTERVAL_MS);
      relay.unref();
    },
    write,
    async heartbeat(beat) {
      if (!plan.window) return;
      await advance(beat);
      if (usesOutbox) await deliver();
    },
    close: once(async () => {
      if (relay) clearInterval(relay);
      unreadInputs?.close();
      await draining?.catch(() => undefined);
      await flushDelivered();
    }),
  };
}
