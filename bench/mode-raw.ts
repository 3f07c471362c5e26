/**
 * Mode (a): how fast kafkajs alone reads the corpus. eachBatch with a handler that does nothing,
 * kafkajs resolving and auto-committing each batch; the consumer settings are the router's defaults
 * (session, heartbeat, bytes per partition, partitions consumed concurrently).
 */
import { Kafka, logLevel } from 'kafkajs';
import { kafkaSchema } from '../src/config/schema.ts';
import type { ModeRunner, WorkerTask } from './protocol.ts';

export async function prepareRaw(task: Extract<WorkerTask, { kind: 'raw' }>): Promise<ModeRunner> {
  const defaults = kafkaSchema.parse({ brokers: [task.servers.broker], topics: [task.topic] });
  const kafka = new Kafka({ clientId: 'cdc-bench-raw', brokers: [task.servers.broker], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({
    groupId: task.group,
    sessionTimeout: defaults.session_timeout_ms,
    heartbeatInterval: defaults.heartbeat_interval_ms,
    rebalanceTimeout: defaults.rebalance_timeout_ms,
    maxBytesPerPartition: defaults.max_bytes_per_partition,
    allowAutoTopicCreation: false,
  });
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
