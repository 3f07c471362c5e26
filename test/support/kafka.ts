import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, Partitioners, type Admin, type Producer } from 'kafkajs';

export const BROKER = `127.0.0.1:${process.env['KAFKA_PORT'] ?? '9092'}`;

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
}

export function testKafka(): Kafka {
  return new Kafka({ clientId: 'cdc-router-test', brokers: [BROKER], logLevel: logLevel.NOTHING });
}

export interface KafkaFixture {
  readonly admin: Admin;
  readonly producer: Producer;
  createTopic(topic: string, partitions: number): Promise<void>;
  /** Committed offsets of a group for a topic, by partition (-1 where nothing committed). */
  committed(groupId: string, topic: string): Promise<Map<number, bigint>>;
  /** End offsets (high watermarks) by partition. */
  endOffsets(topic: string): Promise<Map<number, bigint>>;
  close(): Promise<void>;
}

export async function kafkaFixture(): Promise<KafkaFixture> {
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const topics: string[] = [];
  const groups: string[] = [];
  return {
    admin,
    producer,
    async createTopic(topic, partitions) {
      await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
      topics.push(topic);
    },
    async committed(groupId, topic) {
      if (!groups.includes(groupId)) groups.push(groupId);
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return new Map((res?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
    },
    async endOffsets(topic) {
      const res = await admin.fetchTopicOffsets(topic);
      return new Map(res.map((p) => [p.partition, BigInt(p.high)]));
    },
    async close() {
      await producer.disconnect();
      await admin.deleteGroups(groups).catch(() => undefined);
      await admin.deleteTopics({ topics }).catch(() => undefined);
      await admin.disconnect();
    },
  };
}

/** Polls until fn returns a truthy value (tests wait for state, never sleep a fixed time). */
export async function waitUntil<T>(fn: () => Promise<T> | T, timeoutMs = 60_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
