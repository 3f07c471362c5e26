import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import type { KafkaConfig } from '../config/schema.ts';
import type { RouterEvents } from '../events.ts';
import type { RawRecord } from '../model/change-event.ts';

/** What the handler of one fetched batch reports back. */
export interface HandledBatch {
  /** Next offset to read, committed when set: everything before it is finished. */
  readonly commitOffset: bigint | undefined;
  /** Pause this partition (a record that can neither be written nor parked). */
  readonly halt: boolean;
}

export interface BatchControl {
  /** Fires on shutdown (after the drain timeout) or when a rebalance takes the partition away. */
  readonly signal: AbortSignal;
  /**
   * Everything before `offset` is finished: commit it now, while the rest of the batch is still
   * being written (a sink retrying one record must not hold back the commits of those before it).
   */
  progress(offset: bigint): void;
}

export type BatchHandler = (records: readonly RawRecord[], control: BatchControl) => Promise<HandledBatch>;

/**
 * The narrow consumer module: the one place that talks to kafkajs's consumer, so the client can be
 * swapped. Consumer group with eachBatch, no auto-resolve and no auto-commit: offsets are committed
 * here, only up to what the handler says is finished, and only while this member owns the partition.
 */
export interface ChangeConsumer {
  run(handler: BatchHandler): Promise<void>;
  pause(topic: string, partition: number): void;
  resume(topic: string, partition: number): void;
  paused(): { topic: string; partitions: number[] }[];
  /** Stops fetching, lets in-flight batches finish for up to drainMs, then aborts them; leaves the group. */
  stop(drainMs?: number): Promise<void>;
  /**
   * Reports, after each fetched batch is handled, the offset following its last record, counting
   * records the handler never sees (transaction markers, aborted or compacted-away records): a
   * replay needs it to recognise the end of a range that ends with one of those.
   */
  onFetched(listener: (topic: string, partition: number, nextOffset: bigint) => void): () => void;
}

function toHeaders(headers: IHeaders | undefined): Record<string, Buffer | undefined> {
  const out: Record<string, Buffer | undefined> = {};
  if (!headers) return out;
  for (const [k, v] of Object.entries(headers)) {
    // Repeated headers keep their last value; Debezium and Connect set each name once.
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    out[k] = last === undefined ? undefined : Buffer.isBuffer(last) ? last : Buffer.from(last);
  }
  return out;
}

export function toRawRecord(topic: string, partition: number, m: KafkaMessage): RawRecord {
  return {
    topic,
    partition,
    offset: m.offset,
    timestamp: Number(m.timestamp),
    key: m.key,
    value: m.value,
    headers: toHeaders(m.headers),
  };
}

export function createChangeConsumer(kafka: Kafka, config: KafkaConfig, events: RouterEvents, logger: Logger): ChangeConsumer {
  const log = logger.child({ component: 'consumer', group: config.group_id });
  const consumer: Consumer = kafka.consumer({
    groupId: config.group_id,
    sessionTimeout: config.session_timeout_ms,
    heartbeatInterval: config.heartbeat_interval_ms,
    rebalanceTimeout: config.rebalance_timeout_ms,
    maxBytesPerPartition: config.max_bytes_per_partition,
    allowAutoTopicCreation: false,
    retry: { retries: 10 },
  });
  const inFlight = new Set<AbortController>();
  let stopping: Promise<void> | undefined;

  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    log.info({ memberId: payload.memberId, assignment: payload.memberAssignment }, 'joined group');
    events.emit('group.joined', { memberId: payload.memberId, assignment: payload.memberAssignment });
  });
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    log.error({ err: payload.error, restart: payload.restart }, 'consumer crashed');
  });

  async function eachBatch(handler: BatchHandler, payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    if (batch.messages.length === 0) return;
    const records = batch.messages.map((m) => toRawRecord(batch.topic, batch.partition, m));
    const controller = new AbortController();
    inFlight.add(controller);
    // kafkajs heartbeats only when asked; long sink writes (a sink down, retrying) must keep
    // the membership alive. A failed heartbeat means a rebalance: abandon the batch.
    const beat = setInterval(() => {
      payload.heartbeat().catch((err: unknown) => {
        log.warn({ err, topic: batch.topic, partition: batch.partition }, 'heartbeat failed; abandoning batch');
        controller.abort(err);
      });
    }, Math.max(500, Math.floor(config.heartbeat_interval_ms / 2)));
    // Commits run one at a time, always for the highest finished offset seen so far.
    let committed = -1n;
    let wanted = -1n;
    let chain: Promise<void> = Promise.resolve();
    const commit = (offset: bigint) => {
      if (offset <= wanted) return chain;
      wanted = offset;
      chain = chain.then(async () => {
        const target = wanted;
        // A revoked partition belongs to another member now: commit nothing for it.
        if (target <= committed || payload.isStale()) return;
        payload.resolveOffset((target - 1n).toString());
        try {
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: target.toString() }]);
          committed = target;
          events.emit('batch.committed', { topic: batch.topic, partition: batch.partition, offset: target.toString() });
        } catch (err) {
          // Uncommitted records are read again (by us or the next owner); sinks are idempotent.
          log.warn({ err, topic: batch.topic, partition: batch.partition, offset: target.toString() }, 'commit failed');
        }
      });
      return chain;
    };
    try {
      const result = await handler(records, { signal: controller.signal, progress: (o) => void commit(o) });
      if (result.commitOffset !== undefined) await commit(result.commitOffset);
      await chain;
      if (result.halt && !payload.isStale()) consumer.pause([{ topic: batch.topic, partitions: [batch.partition] }]);
    } finally {
      clearInterval(beat);
      inFlight.delete(controller);
    }
  }

  return {
    async run(handler) {
      await consumer.connect();
      const topics: (string | RegExp)[] = config.topic_pattern ? [new RegExp(config.topic_pattern)] : [...(config.topics ?? [])];
      await consumer.subscribe({ topics, fromBeginning: config.from_beginning });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: config.partitions_consumed_concurrently,
        eachBatch: (payload) => eachBatch(handler, payload),
      });
    },
    pause(topic, partition) {
      consumer.pause([{ topic, partitions: [partition] }]);
    },
    resume(topic, partition) {
      consumer.resume([{ topic, partitions: [partition] }]);
    },
    paused() {
      return consumer.paused();
    },
    onFetched(listener) {
      return consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) =>
        listener(payload.topic, payload.partition, BigInt(payload.lastOffset) + 1n),
      );
    },
    stop(drainMs = 10_000) {
      return (stopping ??= (async () => {
        const timer = setTimeout(() => {
          for (const c of inFlight) c.abort(new Error('shutdown: drain timeout'));
        }, drainMs);
        try {
          await consumer.disconnect();
        } finally {
          clearTimeout(timer);
        }
      })());
    },
  };
}
