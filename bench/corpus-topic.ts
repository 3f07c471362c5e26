/**
 * The corpus on the broker: produced once into a topic named by its parameters, reused by every
 * later run that asks for the same corpus (kept forever: retention off). A topic of that name that
 * does not hold exactly the corpus (an interrupted production) is deleted and produced again.
 */
import type { Admin, Kafka, Message } from 'kafkajs';
import { corpusTopic, createCorpusGenerator, serialize, type CorpusSpec } from './corpus.ts';

const CHUNK = 2_000;

async function recordCount(admin: Admin, topic: string): Promise<{ partitions: number; records: number; trimmed: boolean }> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return {
    partitions: offsets.length,
    records: offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0),
    trimmed: offsets.some((p) => p.low !== '0'),
  };
}

async function createTopic(admin: Admin, topic: string, partitions: number): Promise<void> {
  // Just after a delete the broker may still refuse the name for a moment.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.createTopics({
        topics: [
          {
            topic,
            numPartitions: partitions,
            configEntries: [
              { name: 'retention.ms', value: '-1' },
              { name: 'retention.bytes', value: '-1' },
            ],
          },
        ],
        waitForLeaders: true,
      });
      return;
    } catch (err) {
      if (attempt >= 30) throw err;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}

/** Another corpus than bench/corpus.ts's (the views corpus): its topic name and its records in order. */
export interface CorpusSource {
  readonly topic: string;
  readonly messages: () => () => { partition: number; key: string; value: string | null };
}

function defaultSource(spec: CorpusSpec): CorpusSource {
  return {
    topic: corpusTopic(spec),
    messages: () => {
      const gen = createCorpusGenerator(spec.seed, spec.partitions);
      return () => {
        const r = gen.next();
        return { partition: r.partition, ...serialize(spec.seed, r) };
      };
    },
  };
}

/** Produces a corpus's records into `topic`, in generator order, each into its key's partition. */
export async function produceCorpus(
  kafka: Kafka,
  topic: string,
  spec: CorpusSpec,
  log: (line: string) => void,
  source: CorpusSource = defaultSource(spec),
): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const next = source.messages();
    let inflight: Promise<unknown> = Promise.resolve();
    let lastLog = Date.now();
    for (let start = 0; start < spec.events; start += CHUNK) {
      const messages: Message[] = [];
      for (let i = start; i < Math.min(spec.events, start + CHUNK); i++) {
        messages.push(next());
      }
      // The next chunk is serialized while this one is in flight.
      await inflight;
      inflight = producer.send({ topic, acks: -1, messages });
      if (Date.now() - lastLog > 5_000) {
        lastLog = Date.now();
        log(`  corpus: ${start + messages.length} / ${spec.events} records produced`);
      }
    }
    await inflight;
  } finally {
    await producer.disconnect();
  }
}

export interface CorpusTopic {
  readonly topic: string;
  readonly reused: boolean;
  /** Seconds spent producing it (0 when reused). */
  readonly produceSeconds: number;
}

export async function ensureCorpusTopic(
  kafka: Kafka,
  admin: Admin,
  spec: CorpusSpec,
  log: (line: string) => void,
  source: CorpusSource = defaultSource(spec),
): Promise<CorpusTopic> {
  const topic = source.topic;
  if ((await admin.listTopics()).includes(topic)) {
    const have = await recordCount(admin, topic);
    if (have.partitions === spec.partitions && have.records === spec.events && !have.trimmed) return { topic, reused: true, produceSeconds: 0 };
    log(`corpus topic ${topic} holds ${have.records} records in ${have.partitions} partitions, expected ${spec.events} in ${spec.partitions}: producing it again`);
    await admin.deleteTopics({ topics: [topic], timeout: 60_000 });
  }
  log(`producing the corpus into ${topic} (once; later runs reuse it)`);
  const t0 = performance.now();
  await createTopic(admin, topic, spec.partitions);
  await produceCorpus(kafka, topic, spec, log, source);
  const have = await recordCount(admin, topic);
  if (have.records !== spec.events) throw new Error(`corpus topic ${topic} holds ${have.records} records after producing ${spec.events}`);
  return { topic, reused: false, produceSeconds: (performance.now() - t0) / 1000 };
}
