import type { Logger } from 'pino';
import { buildPipeline } from './compose/pipeline.ts';
import type { Config } from './config/load.ts';
import { createKafka } from './consume/kafka-client.ts';
import { createChangeConsumer, type ChangeConsumer } from './consume/consumer.ts';
import { RouterEvents } from './events.ts';
import { startMetrics, type MetricsServer } from './metrics/metrics-service.ts';
import type { FailureHandler } from './pipeline/contracts.ts';

export interface Service {
  readonly events: RouterEvents;
  readonly consumer: ChangeConsumer;
  /** The metrics and health endpoints (bound port, url); undefined when `metrics.enabled` is false. */
  readonly metrics: MetricsServer | undefined;
  /** Stop fetching, drain in-flight batches, commit, close sinks, close the dead-letter queue. Idempotent. */
  stop(): Promise<void>;
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
