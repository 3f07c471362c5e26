import type { Logger } from 'pino';
import type { Config } from './config/load.ts';
import { createKafka } from './consume/kafka-client.ts';
import { createChangeConsumer, type ChangeConsumer } from './consume/consumer.ts';
import { createDecoder } from './decode/debezium.ts';
import { RouterEvents } from './events.ts';
import { createBatchProcessor, type FailureHandler } from './pipeline/batch-processor.ts';
import { policyFromConfig } from './retry/retrier.ts';
import { createRouter } from './route/router.ts';
import type { Sink } from './sink/sink.ts';

export interface Service {
  readonly events: RouterEvents;
  readonly consumer: ChangeConsumer;
  /** Stop fetching, drain in-flight batches, commit, close sinks. Idempotent. */
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

/** The composition root: builds every component from the validated config and starts consuming. */
export async function startService(
  config: Config,
  options: { logger: Logger; events?: RouterEvents; onFailure?: FailureHandler },
): Promise<Service> {
  const { logger } = options;
  const events = options.events ?? new RouterEvents();
  const sinks = new Map<string, Sink>();
  for (const spec of config.sinks) {
    sinks.set(spec.name, spec.factory.create(spec.name, spec.config, { logger }));
  }
  const closeSinks = async () => {
    const results = await Promise.allSettled([...sinks.values()].map((s) => s.close()));
    for (const r of results) if (r.status === 'rejected') logger.error({ err: r.reason }, 'sink close failed');
  };
  try {
    await Promise.all([...sinks.values()].map((s) => s.start()));
  } catch (err) {
    await closeSinks();
    throw err;
  }

  const router = createRouter(config.routes, sinks);
  const processor = createBatchProcessor({
    decoder: createDecoder({
      heartbeatTopicPrefix: config.decode.heartbeat_topic_prefix,
      transactionTopicSuffix: config.decode.transaction_topic_suffix,
    }),
    router,
    unrouted: config.unrouted,
    maxBatchSize: config.maxBatchSize,
    retryPolicy: policyFromConfig(config.retry),
    events,
    logger,
    onFailure: options.onFailure ?? haltingFailureHandler(logger.child({ component: 'pipeline' })),
  });

  const consumer = createChangeConsumer(createKafka(config.kafka, logger), config.kafka, events, logger);
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
  });
  logger.info(
    { topics: config.kafka.topics ?? config.kafka.topic_pattern, group: config.kafka.group_id, sinks: [...sinks.keys()] },
    'cdc-router running',
  );

  let stopping: Promise<void> | undefined;
  return {
    events,
    consumer,
    stop: () =>
      (stopping ??= (async () => {
        logger.info('stopping: draining in-flight batches');
        try {
          await consumer.stop();
        } finally {
          await closeSinks();
          logger.info('stopped');
        }
      })()),
  };
}
