import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/load.ts';
import type { KafkaConfig } from '../config/schema.ts';
import { createChangeConsumer } from '../consume/consumer.ts';
import { createKafka } from '../consume/kafka-client.ts';
import { CdcError } from '../errors.ts';
import { RouterEvents } from '../events.ts';
import type { RawRecord } from '../model/change-event.ts';
import { configuredTopics, connectGroupAdmin, type GroupAdmin } from '../consume/group-admin.ts';

/** Where a read starts in each partition: its first offset, its end, or its last `last` records. */
export type StartAt = 'beginning' | 'end' | { readonly last: number };

export interface ThrowawayReadOptions {
  /** Names the group, `<live group>-<label>-…`, so that a leftover one says where it came from. */
  readonly label: string;
  readonly start: StartAt;
  /** Stop after this many records. */
  readonly maxRecords?: number | undefined;
  /** Stop after this long. */
  readonly durationMs?: number | undefined;
  /**
   * Stop once every partition has been read up to the end offset it had when the read began (records
   * written after that are not read). Ignored when starting at the end.
   */
  readonly stopAtEnd: boolean;
  readonly logger: Logger;
  readonly signal?: AbortSignal | undefined;
}

export type StopReason = 'end' | 'max-records' | 'duration' | 'signal';

export interface ThrowawayReadResult {
  /** The throwaway group (deleted when the read returns). */
  readonly group: string;
  readonly topics: readonly string[];
  readonly records: number;
  readonly stoppedBy: StopReason;
}

const slot = (topic: string, partition: number) => `${topic}\u0000${partition}`;

async function topicsOf(kafka: KafkaConfig, admin: GroupAdmin): Promise<string[]> {
  if (kafka.topics) return [...kafka.topics];
  const topics = configuredTopics(kafka, await admin.topics());
  if (topics.length === 0) {
    throw new CdcError(`no topic matches kafka.topic_pattern /${kafka.topic_pattern ?? ''}/`, { code: 'NO_TOPICS', retriable: false });
  }
  return topics;
}

interface Plan {
  /** Per partition (slot), the offset to read up to (exclusive): its end offset now. */
  readonly ends: Map<string, bigint>;
  /** Per topic, the start offsets to seed the group with (only for `{ last }`). */
  readonly seeds: Map<string, Map<number, bigint>>;
  /** Partitions with something to read before their end. */
  readonly pending: Set<string>;
}

async function plan(admin: GroupAdmin, topics: readonly string[], start: StartAt): Promise<Plan> {
  const ends = new Map<string, bigint>();
  const seeds = new Map<string, Map<number, bigint>>();
  const pending = new Set<string>();
  for (const topic of topics) {
    const starts = new Map<number, bigint>();
    for (const b of await admin.bounds(topic)) {
      const from = start === 'beginning' ? b.low : start === 'end' ? b.high : b.high - BigInt(start.last);
      const clamped = from < b.low ? b.low : from;
      starts.set(b.partition, clamped);
      ends.set(slot(topic, b.partition), b.high);
      if (clamped < b.high) pending.add(slot(topic, b.partition));
    }
    if (typeof start === 'object') seeds.set(topic, starts);
  }
  return { ends, seeds, pending };
}

/**
 * Reads the config's topics with the pipeline's own consumer, in a new consumer group of its own,
 * and hands each fetched batch to `onBatch` (one at a time, in fetch order per partition). Commits
 * nothing: no offset of the live group is read or written, the throwaway group gets no commits
 * (except, for `{ last }`, the start offsets it is seeded with, as replays do: kafkajs cannot
 * assign partitions by hand), and it is deleted before this returns.
 */
export async function readInThrowawayGroup(
  config: Config,
  options: ThrowawayReadOptions,
  onBatch: (records: readonly RawRecord[]) => Promise<void>,
): Promise<ThrowawayReadResult> {
  const { logger, start } = options;
  const group = `${config.kafka.group_id}-${options.label}-${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
  const log = logger.child({ component: options.label, group });
  const admin = await connectGroupAdmin(config.kafka, logger);
  try {
    const topics = await topicsOf(config.kafka, admin);
    const { ends, seeds, pending } = await plan(admin, topics, start);
    const stopAtEnd = options.stopAtEnd && start !== 'end';
    if ((stopAtEnd && pending.size === 0) || options.maxRecords === 0) return { group, topics, records: 0, stoppedBy: stopAtEnd ? 'end' : 'max-records' };
    try {
      for (const [topic, offsets] of seeds) await admin.seedOffsets(group, topic, offsets);
      return await consume(config, { ...options, stopAtEnd, group, topics, ends, pending, log }, onBatch);
    } finally {
      await admin.deleteGroup(group).catch((err: unknown) => log.warn({ err }, 'could not delete the throwaway consumer group'));
    }
  } finally {
    await admin.close();
  }
}

interface ConsumeOptions extends ThrowawayReadOptions {
  readonly group: string;
  readonly topics: readonly string[];
  readonly ends: ReadonlyMap<string, bigint>;
  readonly pending: Set<string>;
  readonly log: Logger;
}

async function consume(
  config: Config,
  options: ConsumeOptions,
  onBatch: (records: readonly RawRecord[]) => Promise<void>,
): Promise<ThrowawayReadResult> {
  const { group, topics, ends, pending, stopAtEnd, maxRecords, logger } = options;
  let records = 0;
  let stoppedBy: StopReason | undefined;
  let failure: unknown;
  let finish = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const stop = (reason: StopReason) => {
    stoppedBy ??= reason;
    finish();
  };
  const timer = options.durationMs !== undefined ? setTimeout(() => stop('duration'), options.durationMs) : undefined;
  const onAbort = () => stop('signal');
  if (options.signal?.aborted) stop('signal');
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const kafka: KafkaConfig = { ...config.kafka, group_id: group, topics: [...topics], topic_pattern: undefined, from_beginning: options.start !== 'end' };
  const consumer = createChangeConsumer(createKafka(config.kafka, logger, `-${options.label}`), kafka, new RouterEvents(), logger, {
    mergeUpTo: config.maxBatchSize,
  });
  // Counts what the handler never sees too (transaction markers), so a partition ending in one ends.
  consumer.onFetched((topic, partition, nextOffset) => {
    const key = slot(topic, partition);
    if (pending.has(key) && nextOffset >= (ends.get(key) ?? 0n)) pending.delete(key);
    if (stopAtEnd && pending.size === 0) stop('end');
  });
  // Partitions run concurrently; batches reach onBatch one at a time.
  let chain = Promise.resolve();
  try {
    await consumer.run((batch) => {
      const run = chain.then(async () => {
        if (stoppedBy) return { commitOffset: undefined, halt: true };
        const end = ends.get(slot(batch[0]!.topic, batch[0]!.partition));
        let take = stopAtEnd && end !== undefined ? batch.filter((r) => BigInt(r.offset) < end) : batch;
        if (maxRecords !== undefined) take = take.slice(0, Math.max(0, maxRecords - records));
        if (take.length > 0) {
          records += take.length;
          try {
            await onBatch(take);
          } catch (err) {
            failure = err;
            stop('signal');
          }
        }
        if (maxRecords !== undefined && records >= maxRecords) stop('max-records');
        // Nothing is ever committed: commitOffset stays undefined.
        return { commitOffset: undefined, halt: stoppedBy !== undefined };
      });
      chain = run.then(() => undefined);
      return run;
    });
    await finished;
  } finally {
    if (timer) clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    await consumer.stop();
  }
  if (failure !== undefined) throw failure;
  options.log.debug({ records, stoppedBy }, 'throwaway read done');
  return { group, topics, records, stoppedBy: stoppedBy ?? 'end' };
}
