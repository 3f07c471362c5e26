import { randomUUID } from 'node:crypto';
import { Partitioners, type Admin, type Kafka, type Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.ts';
import { once } from '../sink/sink.ts';
import {
  DeadLetterError,
  selectEntries,
  type DeadLetter,
  type DeadLetterEntry,
  type DeadLetterQueue,
  type DeadLetterStatus,
} from './dead-letter-queue.ts';
import { entryHeaders, markerHeaders, parseRecord, type KafkaHeaderValue } from './kafka-headers.ts';

export interface KafkaDeadLetterOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  /** Used when the topic has to be created. */
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly topicConfig: Readonly<Record<string, string>>;
  /** Written as `__connect.errors.connector.name`: the consumer group. */
  readonly connector: string;
  /** Prefix of the throwaway consumer groups that read the topic. */
  readonly clientId: string;
  readonly readTimeoutMs: number;
  readonly logger: Logger;
}

/** Protocol errors no retry can fix: the entry itself is refused. */
const PERMANENT = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_TOPIC_EXCEPTION',
  'UNSUPPORTED_FOR_MESSAGE_FORMAT',
]);

function protocolTypes(err: unknown): string[] {
  const types: string[] = [];
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string') types.push(type);
    e = (e as { originalError?: unknown; cause?: unknown }).originalError ?? (e as { cause?: unknown }).cause;
  }
  return types;
}

/**
 * kafkajs gives up after its own few retries with a non-retriable error even when the broker is only
 * away; for the dead-letter queue an unreachable broker is worth waiting for, a refused entry is not.
 */
function classify(err: unknown, topic: string): DeadLetterError {
  const permanent = protocolTypes(err).find((t) => PERMANENT.has(t));
  return new DeadLetterError(`cannot write to topic ${topic}: ${errorMessage(err)}`, {
    code: permanent ?? 'KAFKA_UNAVAILABLE',
    retriable: permanent === undefined,
    cause: err,
  });
}

type Marker = { readonly status: Exclude<DeadLetterStatus, 'open'>; readonly at: number };

/**
 * The Kafka backend: one record per entry, appended with acks=all by an idempotent producer.
 * Status changes are marker records keyed by the entry id (same key, same partition, so their order
 * holds); reading folds them. Reading scans the topic from its start to the end offsets seen when
 * the read began, with a throwaway consumer group deleted afterwards.
 */
export function createKafkaDeadLetterQueue(options: KafkaDeadLetterOptions): DeadLetterQueue {
  const { kafka, topic } = options;
  const log = options.logger.child({ component: 'dlq', kind: 'kafka', topic });
  let producer: Producer | undefined;
  let admin: Admin | undefined;
  /** Ids known to exist: those put or read by this instance (mark checks unknown ones). */
  const known = new Set<string>();

  async function ensureTopic(a: Admin): Promise<void> {
    // Asking first: kafkajs logs an error for every CreateTopics answer "already exists".
    if ((await a.listTopics()).includes(topic)) return;
    const created = await a.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic,
          numPartitions: options.partitions,
          replicationFactor: options.replicationFactor,
          configEntries: Object.entries(options.topicConfig).map(([name, value]) => ({ name, value })),
        },
      ],
    });
    if (created) log.info({ partitions: options.partitions }, 'dead-letter topic created');
  }

  async function scan(): Promise<Map<string, DeadLetterEntry>> {
    const a = admin;
    if (!a) throw new DeadLetterError('read before start', { code: 'NOT_STARTED', retriable: false });
    const ends = new Map<number, bigint>();
    for (const p of await a.fetchTopicOffsets(topic)) {
      if (BigInt(p.high) > BigInt(p.low)) ends.set(p.partition, BigInt(p.high));
    }
    const entries = new Map<string, DeadLetterEntry>();
    const markers = new Map<string, Marker>();
    if (ends.size > 0) await readUntil(ends, entries, markers);
    for (const [id, m] of markers) {
      const e = entries.get(id);
      if (e) entries.set(id, { ...e, status: m.status, statusAt: m.at });
    }
    for (const id of entries.keys()) known.add(id);
    return entries;
  }

  async function readUntil(
    ends: Map<number, bigint>,
    entries: Map<string, DeadLetterEntry>,
    markers: Map<string, Marker>,
  ): Promise<void> {
    const groupId = `${options.clientId}-dlq-reader-${randomUUID()}`;
    const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: 200, retry: { retries: 5 } });
    const remaining = new Set(ends.keys());
    let timer: NodeJS.Timeout | undefined;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new DeadLetterError(`reading topic ${topic} timed out after ${options.readTimeoutMs} ms`, { code: 'READ_TIMEOUT', retriable: true })),
          options.readTimeoutMs,
        );
        consumer.on(consumer.events.CRASH, ({ payload }) => reject(classify(payload.error, topic)));
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              const end = ends.get(batch.partition);
              if (end === undefined) return;
              for (const m of batch.messages) {
                const offset = BigInt(m.offset);
                if (offset >= end) break;
                const parsed = parseRecord(m.key, m.value, m.headers as Record<string, KafkaHeaderValue | null>);
                const at = Number(m.timestamp);
                if (parsed.kind === 'entry') {
                  const id = `${batch.partition}-${m.offset}`;
                  entries.set(id, { ...parsed.letter, id, status: 'open', storedAt: at, statusAt: undefined });
                } else if (parsed.kind === 'marker') {
                  // Markers of one id share a partition: the later offset wins.
                  markers.set(parsed.id, { status: parsed.status, at });
                }
              }
              if (BigInt(batch.lastOffset()) + 1n >= end) {
                remaining.delete(batch.partition);
                if (remaining.size === 0) resolve();
              }
            },
          })
          .catch(reject);
      });
    } finally {
      clearTimeout(timer);
      await consumer.disconnect().catch((err: unknown) => log.warn({ err }, 'reader disconnect failed'));
      await admin?.deleteGroups([groupId]).catch(() => undefined);
    }
  }

  return {
    kind: 'kafka',
    target: topic,
    async start() {
      if (producer) return;
      const a = kafka.admin();
      await a.connect();
      admin = a;
      await ensureTopic(a);
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        // A few quick retries inside kafkajs; longer outages are the pipeline retrier's (backoff, abort).
        retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 5_000 },
      });
      await p.connect();
      producer = p;
      log.info('dead-letter queue ready');
    },
    async put(letter: DeadLetter) {
      if (!producer) throw new DeadLetterError('put before start', { code: 'NOT_STARTED', retriable: false });
      let meta;
      try {
        meta = await producer.send({
          topic,
          acks: -1,
          messages: [{ key: letter.key, value: letter.value, headers: entryHeaders(letter, options.connector) }],
        });
      } catch (err) {
        throw classify(err, topic);
      }
      const m = meta[0];
      const offset = m?.baseOffset ?? m?.offset;
      if (!m || offset === undefined) {
        throw new DeadLetterError(`no offset in the produce response of topic ${topic}`, { code: 'NO_OFFSET', retriable: true });
      }
      const id = `${m.partition}-${offset}`;
      known.add(id);
      return id;
    },
    async list(filter = {}) {
      return selectEntries((await scan()).values(), filter);
    },
    async get(id) {
      return (await scan()).get(id);
    },
    async mark(id, status) {
      if (!producer) throw new DeadLetterError('mark before start', { code: 'NOT_STARTED', retriable: false });
      if (!known.has(id) && !(await scan()).has(id)) {
        throw new DeadLetterError(`no entry ${id} in topic ${topic}`, { code: 'UNKNOWN_ENTRY', retriable: false });
      }
      try {
        await producer.send({ topic, acks: -1, messages: [{ key: id, value: null, headers: markerHeaders(status) }] });
      } catch (err) {
        throw classify(err, topic);
      }
    },
    close: once(async () => {
      const results = await Promise.allSettled([producer?.disconnect(), admin?.disconnect()]);
      producer = undefined;
      admin = undefined;
      for (const r of results) if (r.status === 'rejected') log.warn({ err: r.reason }, 'dead-letter queue close step failed');
    }),
  };
}
