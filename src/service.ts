import type { Logger } from 'pino';
import type { Config, SinkSpec } from './config/load.ts';
import { createKafka } from './consume/kafka-client.ts';
import { createChangeConsumer, type ChangeConsumer } from './consume/consumer.ts';
import { decodingFromConfig } from './decode/avro.ts';
import { createDeadLetterQueue } from './dlq/create-dead-letter-queue.ts';
import { createDeadLetterHandler } from './dlq/failure-handler.ts';
import { RouterEvents } from './events.ts';
import { startMetrics, type MetricsServer } from './metrics/metrics-service.ts';
import { createBatchProcessor, type BatchProcessor } from './pipeline/batch-processor.ts';
import type { FailureHandler } from './pipeline/contracts.ts';
import { policyFromConfig } from './retry/retrier.ts';
import { createRouter } from './route/router.ts';
import { withCircuitBreaker } from './sink/circuit-breaker.ts';
import { withRateLimit } from './sink/rate-limiter.ts';
import { once, type Sink } from './sink/sink.ts';
import { withWriteCombining } from './sink/write-combiner.ts';
import { buildViews } from './view/build-views.ts';

export interface Service {
  readonly events: RouterEvents;
  readonly consumer: ChangeConsumer;
  /** The metrics and health endpoints (bound port, url); undefined when `metrics.enabled` is false. */
  readonly metrics: MetricsServer | undefined;
  /** Stop fetching, drain in-flight batches, commit, close sinks, close the dead-letter queue. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Without a dead-letter queue a record that can never succeed stops its partition: nothing after
 * it is committed, and the log says exactly which record and why.
 */
function haltingFailureHandler(logger: Logger): FailureHandler {
  return async ({ record, error, sink, attempts }) => {
    logger.error(
      {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        stage: error.stage,
        code: error.code,
        sink,
        attempts,
        err: error,
      },
      'record cannot be processed; partition halted at it (fix the cause and restart)',
    );
    return false;
  };
}

/** What turns fetched batches into sink writes, built from the config. */
export interface Pipeline {
  readonly processor: BatchProcessor;
  readonly sinkNames: readonly string[];
  /** Closes every sink, each one even when another fails, then the dead-letter queue. Idempotent. */
  close(): Promise<void>;
}

/**
 * Builds and starts the sinks, the dead-letter queue (the failure handler when the config has one,
 * else a failed record halts its partition), the router and the batch processor. Shared
 * by the service and by replays, so that a replay writes exactly as the live service does and its
 * failed records go where the live service sends them.
 */
export async function buildPipeline(
  config: Config,
  options: { logger: Logger; events: RouterEvents; onFailure?: FailureHandler },
): Promise<Pipeline> {
  const { logger, events } = options;
  // The rate limiter inside the combiner: it meters the writes that reach the store, once per sink.
  // The breaker outside the combiner: each partition's failed write counts (as it would without
  // combining), and while the circuit is open no write even queues for the dead server.
  const wrap = (sink: Sink, limits: { rateLimit?: SinkSpec['rateLimit']; maxInFlight?: number | undefined } = {}) =>
    withCircuitBreaker(
      withWriteCombining(limits.rateLimit ? withRateLimit(sink, limits.rateLimit, events) : sink, {
        concurrency: limits.maxInFlight ?? config.sinkConcurrency,
        maxRecords: config.maxBatchSize,
      }),
      { failureThreshold: config.retry.circuit_failure_threshold, openMs: config.retry.circuit_open_ms },
      events,
      logger,
    );
  const sinks = new Map<string, Sink>();
  for (const spec of config.sinks) sinks.set(spec.name, wrap(spec.factory.create(spec.name, spec.config, { logger }), spec));
  const views = buildViews(config, { sinks, events, logger, wrap });
  const closeAll = async (list: readonly Sink[]) => {
    const results = await Promise.allSettled(list.map((s) => s.close()));
    for (const r of results) if (r.status === 'rejected') logger.error({ err: r.reason }, 'sink close failed');
  };
  // Views first: they write to the other sinks until they are closed.
  const closeSinks = once(async () => {
    await closeAll(views.sinks);
    await views.close().catch((err: unknown) => logger.error({ err }, 'view state close failed'));
    await closeAll([...sinks.values()]);
  });
  // Closed last: until the sinks are closed a record can still fail and need it.
  const dlq = options.onFailure ? undefined : createDeadLetterQueue(config, logger);
  const close = once(async () => {
    await closeSinks();
    await dlq?.close().catch((err: unknown) => logger.error({ err }, 'dead-letter queue close failed'));
  });
  try {
    await Promise.all([...sinks.values()].map((s) => s.start()));
    await Promise.all(views.sinks.map((s) => s.start()));
    await dlq?.start();
  } catch (err) {
    await close();
    throw err;
  }

  const router = createRouter(config.routes, sinks, views.byTable);
  // Avro-framed records through the schema registry when one is configured, JSON as before.
  const decoding = decodingFromConfig(config, logger.child({ component: 'decode' }));
  const processor = createBatchProcessor({
    decoder: decoding.decoder,
    prepare: decoding.prepare,
    router,
    unrouted: config.unrouted,
    maxBatchSize: config.maxBatchSize,
    retryPolicy: policyFromConfig(config.retry),
    events,
    logger,
    onFailure:
      options.onFailure ??
      (dlq
        ? createDeadLetterHandler({ dlq, retryPolicy: policyFromConfig(config.retry), events, logger })
        : haltingFailureHandler(logger.child({ component: 'pipeline' }))),
  });
  return { processor, sinkNames: [...sinks.keys()], close };
}

/** The composition root: builds every component from the validated config and starts consuming. */
export async function startService(
  config: Config,
  options: { logger: Logger; events?: RouterEvents; onFailure?: FailureHandler },
): Promise<Service> {
  const { logger } = options;
  const events = options.events ?? new RouterEvents();
  // Metrics first, so /healthz and /readyz answer (503, saying why) while sinks start and the group is joined.
  const metrics = config.metrics.enabled ? await startMetrics(config, { events, logger }) : undefined;
  const closeMetricsAndThrow = async (err: unknown): Promise<never> => {
    await metrics?.close();
    throw err;
  };
  // Closes the sinks, then the dead-letter queue: the shutdown order's last two steps.
  const { processor, sinkNames, close: closePipeline } = await buildPipeline(config, {
    logger,
    events,
    onFailure: options.onFailure,
  }).catch(closeMetricsAndThrow);
  metrics?.markSinksStarted();

  const consumer = createChangeConsumer(createKafka(config.kafka, logger), config.kafka, events, logger, {
    mergeUpTo: config.maxBatchSize,
  });
  metrics?.watchConsumer(consumer);
  await consumer.run(async (records, control) => {
    const outcome = await processor.process(records, control);
    if (outcome.halted) {
      const first = records[0]!;
      events.emit('partition.halted', {
        topic: first.topic,
        partition: first.partition,
        offset: outcome.halted.offset,
        error: outcome.halted.error,
      });
    }
    return { commitOffset: outcome.commitOffset, halt: outcome.halted !== undefined };
  }).catch(closeMetricsAndThrow);
  logger.info(
    { topics: config.kafka.topics ?? config.kafka.topic_pattern, group: config.kafka.group_id, sinks: sinkNames },
    'cdc-router running',
  );

  let stopping: Promise<void> | undefined;
  return {
    events,
    consumer,
    metrics,
    stop: () =>
      (stopping ??= (async () => {
        logger.info('stopping: draining in-flight batches');
        metrics?.markStopping();
        try {
          await consumer.stop();
        } finally {
          await closePipeline();
          // Last: the endpoints say "stopping" until everything else is closed.
          await metrics?.close();
          logger.info('stopped');
        }
      })()),
  };
}
