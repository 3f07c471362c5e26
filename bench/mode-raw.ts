/**
 * Mode (a): how fast kafkajs alone reads the corpus. eachBatch with a handler that does nothing,
 * kafkajs resolving and auto-committing each batch; the consumer settings are the router's defaults
 * (session, heartbeat, bytes per partition, partitions consumed concurrently).
 */
import { Kafka, logLevel, type Consumer } from 'kafkajs';
import { kafkaSchema, type KafkaConfig } from '../src/config/schema.ts';
import type { ModeRunner, Servers, WorkerTask } from './protocol.ts';

/** A bare kafkajs consumer with the router's consumer defaults (also the latency floor's). */
export function bareConsumer(
  name: string,
  task: { readonly servers: Servers; readonly topic: string; readonly group: string },
): { consumer: Consumer; defaults: KafkaConfig } {
  const defaults = kafkaSchema.parse({ brokers: [task.servers.broker], topics: [task.topic] });
  const kafka = new Kafka({ clientId: `cdc-bench-${name}`, brokers: [task.servers.broker], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({
    groupId: task.group,
    sessionTimeout: defaults.session_timeout_ms,
    heartbeatInterval: defaults.heartbeat_interval_ms,
    rebalanceTimeout: defaults.rebalance_timeout_ms,
    maxBytesPerPartition: defaults.max_bytes_per_partition,
    maxWaitTimeInMs: defaults.fetch_max_wait_ms,
    allowAutoTopicCreation: false,
  });
  return { consumer, defaults };
}

export async function prepareRaw(task: Extract<WorkerTask, { kind: 'raw' }>): Promise<ModeRunner> {
  const { consumer, defaults } = bareConsumer('raw', task);
  let processed = 0;
  return {
    async start() {
      await consumer.connect();
      await consumer.subscribe({ topics: [task.topic], fromBeginning: true });
      await consumer.run({
        partitionsConsumedConcurrently: defaults.partitions_consumed_concurrently,
        eachBatch: async ({ batch }) => {
          processed += batch.messages.length;
        },
      });
    },
    processed: () => processed,
    async stop() {
      await consumer.disconnect();
      return {};
    },
  };
}
