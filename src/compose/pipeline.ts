import type { Logger } from 'pino';
import type { Config } from '../config/load.ts';
import { decodingFromConfig } from '../decode/avro.ts';
import { createDeadLetterQueue } from '../dlq/create-dead-letter-queue.ts';
import { createDeadLetterHandler } from '../dlq/failure-handler.ts';
import type { RouterEvents } from '../events.ts';
import { createBatchProcessor, type BatchProcessor } from '../pipeline/batch-processor.ts';
import type { FailureHandler } from '../pipeline/contracts.ts';
import { policyFromConfig } from '../retry/retrier.ts';
import { createRouter } from '../route/router.ts';
import { once, type Sink } from '../sink/sink.ts';
import { buildViews } from '../view/build-views.ts';
import { buildSinks } from './sinks.ts';

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
  const { sinks, wrap, inTransaction } = buildSinks(config, { logger, events });
  const views = buildViews(config, { sinks, events, logger, wrap, inTransaction });
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
