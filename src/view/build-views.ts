import type { Logger } from 'pino';
import pg from 'pg';
import type { Config } from '../config/load.ts';
import type { KafkaConfig } from '../config/schema.ts';
import type { RouterEventMap, RouterEvents } from '../events.ts';
import { configuredTopics, connectGroupAdmin, type GroupAdmin } from '../consume/group-admin.ts';
import { partitionLag } from '../metrics/partition-lag.ts';
import { postgresDatabase } from '../sink/postgres-database.ts';
import { once, type InTransactionWriter, type Sink } from '../sink/sink.ts';
import type { InputLags } from './unread-inputs.ts';
import { createViewSink, type ViewSink } from './view-sink.ts';
import { partitionKey, StateStore } from './state-store.ts';
import { planView, type ViewPlan } from './view-plan.ts';

export interface Views {
  /** The view sinks reading each input table. */
  readonly byTable: ReadonlyMap<string, readonly Sink[]>;
  readonly sinks: readonly Sink[];
  readonly plans: readonly ViewPlan[];
  /** Ends the state connections (after the view sinks are closed). Idempotent. */
  close(): Promise<void>;
}

/** End offsets of these topics' partitions, by partitionKey. */
export interface EndOffsets {
  (topics: readonly string[]): Promise<ReadonlyMap<string, bigint>>;
  close?(): Promise<void>;
}

/** Where a view's results (or its late changes) go: written in the state transaction, or through the outbox. */
export type ResultPath = 'state transaction' | 'outbox';

/**
 * The sink's writer into the state transaction, when it has one and writes to the state's database
 * (server, database and role alike); otherwise its results go through the outbox.
 */
export function inStateWriter(config: Config, writer: InTransactionWriter | undefined): InTransactionWriter | undefined {
  if (!config.state || !writer) return undefined;
  return writer.database === postgresDatabase({ connectionString: config.state.connection_string }) ? writer : undefined;
}

const resultPath = (writer: InTransactionWriter | undefined): ResultPath => (writer ? 'state transaction' : 'outbox');

/** Each view's result paths, from the sinks as the config declares them (built, never started). */
export function viewResultPaths(config: Config, logger: Logger): Record<string, { output: ResultPath; late?: ResultPath }> {
  const writers = new Map(config.sinks.map((spec) => [spec.name, spec.factory.create(spec.name, spec.config, { logger }).inTransaction]));
  const path = (sink: string): ResultPath => resultPath(inStateWriter(config, writers.get(sink)));
  return Object.fromEntries(
    Object.entries(config.views).map(([name, v]) => [name, { output: path(v.output.sink), ...(v.late ? { late: path(v.late.sink) } : {}) }]),
  );
}

/**
 * The views of the config, each a sink of its input table writing its results to its output sink.
 * `wrap` gives a view the pipeline's write path around a sink (write combining, circuit breaker);
 * `inTransaction` are the sinks' writers into a caller's transaction (see inStateWriter).
 */
export function buildViews(
  config: Config,
  deps: {
    sinks: ReadonlyMap<string, Sink>;
    events: RouterEvents;
    logger: Logger;
    wrap: (sink: Sink) => Sink;
    inTransaction?: ReadonlyMap<string, InTransactionWriter>;
    endOffsets?: EndOffsets;
  },
): Views {
  const entries = Object.entries(config.views);
  if (entries.length === 0 || !config.state) return { byTable: new Map(), sinks: [], plans: [], close: () => Promise.resolve() };
  const pool = new pg.Pool({ connectionString: config.state.connection_string, max: config.state.pool_size, application_name: 'cdc-router views' });
  // An idle connection that fails (server restart) must not crash the process; the next query reconnects.
  pool.on('error', (err) => deps.logger.warn({ err, component: 'view' }, 'view state connection lost'));
  const store = new StateStore(config.state.schema);
  const byTable = new Map<string, Sink[]>();
  const sinks: Sink[] = [];
  const plans: ViewPlan[] = [];
  const viewSinks: ViewSink[] = [];
  const admin = lazyAdmin(config, deps.logger);
  for (const [name, viewConfig] of entries) {
    const plan = planView(name, viewConfig);
    const output = deps.sinks.get(plan.output.sink);
    if (!output) throw new RangeError(`view ${name} names unknown sink ${plan.output.sink}`);
    const late = plan.late ? deps.sinks.get(plan.late.sink) : undefined;
    if (plan.late && !late) throw new RangeError(`view ${name} names unknown late sink ${plan.late.sink}`);
    const inState = {
      output: inStateWriter(config, deps.inTransaction?.get(plan.output.sink)),
      late: plan.late ? inStateWriter(config, deps.inTransaction?.get(plan.late.sink)) : undefined,
    };
    deps.logger.info(
      { component: 'view', view: name, output: { sink: plan.output.sink, path: resultPath(inState.output) }, late: plan.late && { sink: plan.late.sink, path: resultPath(inState.late) } },
      'view results path',
    );
    const inputLags = kafkaInputLags(config.kafka, admin.get, plan.inputs);
    const viewSink = createViewSink({ plan, pool, store, output, late, inState, events: deps.events, logger: deps.logger, inputLags });
    const sink = deps.wrap(viewSink);
    if (plan.window) viewSinks.push(viewSink);
    plans.push(plan);
    sinks.push(sink);
    for (const table of plan.inputs) byTable.set(table, [...(byTable.get(table) ?? []), sink]);
  }
  const stopBeats = followHeartbeats(config, viewSinks, { ...deps, endOffsets: deps.endOffsets ?? kafkaEndOffsets(admin.get) });
  return {
    byTable,
    sinks,
    plans,
    close: once(async () => {
      await stopBeats().catch((err: unknown) => deps.logger.warn({ err, component: 'view' }, 'view heartbeat admin close failed'));
      await admin.close().catch((err: unknown) => deps.logger.warn({ err, component: 'view' }, 'view Kafka admin close failed'));
      await pool.end();
    }),
  };
}

/**
 * Debezium heartbeats (topic `<heartbeat prefix>.<topic prefix>`, read when kafka.topics lists
 * it) move the watermarks of windowed views reading that connector's topics, so an idle source
 * does not hold windows open. End offsets are fetched after each heartbeat: only partitions
 * applied to their end take its time. Returns the unsubscribe.
 */
function followHeartbeats(
  config: Config,
  viewSinks: readonly ViewSink[],
  deps: { events: RouterEvents; logger: Logger; endOffsets: EndOffsets },
): () => Promise<void> {
  const prefix = `${config.decode.heartbeat_topic_prefix}.`;
  if (viewSinks.length === 0 || !(config.kafka.topics ?? []).some((t) => t.startsWith(prefix))) return () => Promise.resolve();
  const { endOffsets } = deps;
  let busy: Promise<void> | undefined;
  const onSkipped = (e: RouterEventMap['record.skipped']) => {
    if (e.reason !== 'heartbeat' || e.heartbeatMs === undefined || !e.topic.startsWith(prefix) || busy) return;
    const topicPrefix = e.topic.slice(prefix.length);
    const tsMs = e.heartbeatMs;
    const topics = (config.kafka.topics ?? []).filter((t) => t.startsWith(`${topicPrefix}.`));
    // One heartbeat at a time: the next one carries a later time anyway.
    busy = (async () => {
      const ends = await endOffsets(topics);
      for (const v of viewSinks) await v.heartbeat({ topicPrefix, tsMs, ends });
    })()
      .catch((err: unknown) => deps.logger.warn({ err, component: 'view', topic: e.topic }, 'view heartbeat not applied; the next one is'))
      .finally(() => {
        busy = undefined;
      });
  };
  const off = deps.events.on('record.skipped', onSkipped);
  return async () => {
    off();
    await busy;
    await endOffsets.close?.();
  };
}

/** One Kafka admin for the views (heartbeats' end offsets, input lags), connected on first use. */
function lazyAdmin(config: Config, logger: Logger): { get: () => Promise<GroupAdmin>; close: () => Promise<void> } {
  let admin: Promise<GroupAdmin> | undefined;
  return {
    get: () =>
      (admin ??= connectGroupAdmin(config.kafka, logger).catch((err: unknown) => {
        admin = undefined;
        throw err;
      })),
    close: async () => {
      if (admin) await (await admin).close();
    },
  };
}

function kafkaEndOffsets(admin: () => Promise<GroupAdmin>): EndOffsets {
  return async (topics) => {
    const a = await admin();
    const out = new Map<string, bigint>();
    for (const topic of topics) for (const b of await a.bounds(topic)) out.set(partitionKey(topic, b.partition), b.high);
    return out;
  };
}

/**
 * The records the group has still to read per partition of a view's input topics: the consumed
 * topics carrying its tables (Debezium's `<prefix>.<schema>.<table>`) and the topics it has read,
 * by partitionKey (undefined: unknown, see partitionLag). Several admin round trips: the view sink
 * asks it in the background (see cachedUnreadInputs), never per write.
 */
export function kafkaInputLags(kafka: KafkaConfig, admin: () => Promise<GroupAdmin>, tables: readonly string[]): InputLags {
  return async (topicsRead) => {
    const a = await admin();
    // A topic not created yet has no partition to wait for.
    const existing = await a.topics();
    const inputs = configuredTopics(kafka, existing).filter((t) => tables.some((table) => t.endsWith(`.${table}`)));
    const topics = new Set([...inputs, ...topicsRead].filter((t) => existing.includes(t)));
    const out = new Map<string, bigint | undefined>();
    for (const topic of topics) {
      const committed = await a.committed(kafka.group_id, topic);
      for (const b of await a.bounds(topic)) {
        out.set(partitionKey(topic, b.partition), partitionLag({ low: b.low, end: b.high }, committed.get(b.partition), kafka.from_beginning));
      }
    }
    return out;
  };
}
