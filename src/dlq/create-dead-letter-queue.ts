import type { Logger } from 'pino';
import type { DlqConfig, KafkaConfig } from '../config/schema.ts';
import { createKafka } from '../consume/kafka-client.ts';
import { createBullmqDeadLetterQueue } from './bullmq-dlq.ts';
import type { DeadLetterQueue } from './dead-letter-queue.ts';
import { createKafkaDeadLetterQueue } from './kafka-dlq.ts';

/** Default topic or queue name: one dead-letter queue per consumer group. */
export function defaultDlqName(kafka: KafkaConfig): string {
  return `${kafka.group_id}.dlq`;
}

/**
 * The dead-letter queue a config asks for, not started; undefined for `kind: none` (a failed record
 * then halts its partition). One exhaustive switch from kind to backend.
 */
export function createDeadLetterQueue(
  config: { readonly kafka: KafkaConfig; readonly dlq: DlqConfig },
  logger: Logger,
): DeadLetterQueue | undefined {
  const dlq = config.dlq;
  switch (dlq.kind) {
    case 'none':
      return undefined;
    case 'kafka': {
      // kafkajs warns that bounded producer retries void exactly-once; the DLQ is at-least-once by
      // design (a put retried after a lost answer may store an entry twice), so only its errors show.
      const quiet = logger.levelVal >= logger.levels.values['error']! ? logger : logger.child({}, { level: 'error' });
      return createKafkaDeadLetterQueue({
        kafka: createKafka(config.kafka, quiet, '-dlq'),
        topic: dlq.topic ?? defaultDlqName(config.kafka),
        partitions: dlq.partitions,
        replicationFactor: dlq.replication_factor,
        topicConfig: dlq.topic_config,
        connector: config.kafka.group_id,
        clientId: config.kafka.client_id,
        readTimeoutMs: dlq.read_timeout_ms,
        logger,
      });
    }
    case 'bullmq':
      return createBullmqDeadLetterQueue({
        queue: dlq.queue ?? defaultDlqName(config.kafka),
        prefix: dlq.prefix,
        url: dlq.redis.url,
        username: dlq.redis.username,
        password: dlq.redis.password,
        tls: dlq.redis.tls,
        connectTimeoutMs: dlq.redis.connect_timeout_ms,
        logger,
      });
  }
}
