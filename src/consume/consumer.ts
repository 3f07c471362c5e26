import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import type { KafkaConfig } from '../config/schema.ts';
import type { RouterEvents } from '../events.ts';
import type { RawRecord } from '../model/change-event.ts';
import type { BatchControl } from '../pipeline/contracts.ts';

/** What the handler of one fetched batch reports back. */
export interface HandledBatch {
  /** Next offset to read, committed when set: everything before it is finished. */
  readonly commitOffset: bigint | undefined;
  /** Pause this partition (a record that can neither be written nor parked). */
  readonly halt: boolean;
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
  /** kafkajs gave up and will not restart the consumer: the process should exit and be restarted. */
  onFatal(listener: (error: Error) => void): () => void;
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

export function toRawRecord(topic: string, partition: number, m: KafkaMessage, highWatermark?: string): RawRecord {
  return {
    topic,
    partition,
    offset: m.offset,
    timestamp: Number(m.timestamp),
    highWatermark,
    key: m.key,
    value: m.value,
    headers: toHeaders(m.headers),
  };
}

/** One fetched batch waiting for its partition's worker, or the end of a batch of markers only. */
interface QueuedBatch {
  readonly records: readonly RawRecord[] | undefined;
  readonly firstOffset: bigint;
  /** The offset after the batch's last entry, markers included. */
  readonly nextOffset: bigint;
}

/**
 * Processing is decoupled from fetching: kafkajs's fetcher waits until every batch of a fetch is
 * handled before fetching again, so a partition whose sink is down would hold back every other
 * partition of the same broker. Here eachBatch only queues the batch for its partition's worker and
 * returns; a partition whose queue is full is paused until its worker catches up.
 */
class PartitionWorker {
  readonly queue: QueuedBatch[] = [];
  queued = 0;
  readonly controller = new AbortController();
  backpressured = false;
  halted = false;
  /** Highest offset whose commit was requested; commits never go backwards. */
  wanted = -1n;
  committed = -1n;
  commitChain: Promise<void> = Promise.resolve();
  running: Promise<void> | undefined;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly generation: number,
  ) {}
}

export interface ChangeConsumerOptions {
  /** Queued batches of a partition are handed over together up to this many records. */
  readonly mergeUpTo?: number;
}

export function createChangeConsumer(
  kafka: Kafka,
  config: KafkaConfig,
  events: RouterEvents,
  logger: Logger,
  options: ChangeConsumerOptions = {},
): ChangeConsumer {
  const mergeUpTo = options.mergeUpTo ?? 5_000;
  const log = logger.child({ component: 'consumer', group: config.group_id });
  const consumer: Consumer = kafka.consumer({
    groupId: config.group_id,
    sessionTimeout: config.session_timeout_ms,
    heartbeatInterval: config.heartbeat_interval_ms,
    rebalanceTimeout: config.rebalance_timeout_ms,
    maxBytesPerPartition: config.max_bytes_per_partition,
    // kafkajs waits up to 5 s by default: a partition resumed after backpressure (or one assigned)
    // joins the next fetch only, so while every partition in the open one is at its end, it waits that long.
    maxWaitTimeInMs: config.fetch_max_wait_ms,
    allowAutoTopicCreation: false,
    retry: { retries: 10 },
  });
  const maxQueued = config.max_buffered_records_per_partition;
  const workers = new Map<string, PartitionWorker>();
  const fetchedListeners = new Set<(topic: string, partition: number, nextOffset: bigint) => void>();
  /** Bumped on every rebalance: a worker of an older generation may not commit any more. */
  let generation = 0;
  let handler: BatchHandler | undefined;
  let stopping: Promise<void> | undefined;
  const tp = (topic: string, partition: number) => `${topic}\u0000${partition}`;

  /** Abandons all work of the current generation: its partitions may belong to others now. */
  const abandonAll = (reason: string) => {
    generation++;
    for (const w of workers.values()) {
      w.controller.abort(new Error(reason));
      w.queue.length = 0;
      w.queued = 0;
      if (w.backpressured || w.halted) consumer.resume([{ topic: w.topic, partitions: [w.partition] }]);
    }
    workers.clear();
  };

  consumer.on(consumer.events.REBALANCING, () => {
    log.info('rebalancing: abandoning in-flight work, committing nothing more for it');
    abandonAll('rebalance');
  });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    // Also reached without a REBALANCING event (e.g. after a session timeout).
    abandonAll('rejoined the group');
    log.info({ memberId: payload.memberId, assignment: payload.memberAssignment }, 'joined group');
    events.emit('group.joined', { memberId: payload.memberId, assignment: payload.memberAssignment });
  });
  const fatalListeners = new Set<(error: Error) => void>();
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    log.error({ err: payload.error, restart: payload.restart }, 'consumer crashed');
    if (!payload.restart && !stopping) for (const l of fatalListeners) l(payload.error);
  });
  // A fetch of transaction markers only never reaches eachBatch; the worker still has to know.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.batchSize !== 0 || stopping) return;
    const w = workerFor(payload.topic, payload.partition);
    enqueue(w, { records: undefined, firstOffset: BigInt(payload.firstOffset), nextOffset: BigInt(payload.lastOffset) + 1n });
  });

  function workerFor(topic: string, partition: number): PartitionWorker {
    const key = tp(topic, partition);
    let w = workers.get(key);
    if (!w) workers.set(key, (w = new PartitionWorker(topic, partition, generation)));
    return w;
  }

  /** Partitions whose finished offset moved since their last commit request. */
  const dirty = new Set<PartitionWorker>();
  let flushing: Promise<void> | undefined;

  /**
   * Group commit: one OffsetCommit request at a time for every partition whose finished offset
   * moved meanwhile (a dozen partitions finishing small batches would otherwise each send their
   * own request and wait for its turn). Always the highest finished offset so far; never backwards.
   */
  function commit(w: PartitionWorker, offset: bigint): Promise<void> {
    if (offset > w.wanted) {
      w.wanted = offset;
      dirty.add(w);
    }
    return (w.commitChain = flushing ??= flushCommits());
  }

  async function flushCommits(): Promise<void> {
    // Started from within commit(): `flushing` is assigned before the loop runs, and commits
    // requested in the same turn join this request.
    await Promise.resolve();
    for (;;) {
      // Checked and cleared in one synchronous step: a commit() after this sees no flush running.
      if (dirty.size === 0) {
        flushing = undefined;
        return;
      }
      // A partition of an older generation may belong to another member now: commit nothing for it.
      const due = [...dirty].filter((w) => w.generation === generation && w.wanted > w.committed).map((w) => ({ w, target: w.wanted }));
      dirty.clear();
      if (due.length === 0) continue;
      const t0 = performance.now();
      try {
        await consumer.commitOffsets(due.map(({ w, target }) => ({ topic: w.topic, partition: w.partition, offset: target.toString() })));
        const durationMs = performance.now() - t0;
        for (const { w, target } of due) {
          if (target > w.committed) w.committed = target;
          events.emit('batch.committed', { topic: w.topic, partition: w.partition, offset: target.toString(), durationMs });
        }
      } catch (err) {
        // Uncommitted records are read again (by us or the next owner); sinks are idempotent.
        const offsets = due.map(({ w, target }) => `${w.topic}[${w.partition}]@${target}`);
        log.warn({ err, offsets }, 'commit failed');
      }
    }
  }

  function enqueue(w: PartitionWorker, item: QueuedBatch): void {
    if (w.halted) return;
    w.queue.push(item);
    w.queued += item.records?.length ?? 0;
    w.running ??= drain(w).finally(() => (w.running = undefined));
  }

  async function drain(w: PartitionWorker): Promise<void> {
    const h = handler;
    if (!h) return;
    // A batch queued while the last commit is awaited must not wait for the partition's next fetch.
    for (;;) {
      while (w.queue.length > 0 && !w.controller.signal.aborted) {
        const item = w.queue[0]!;
        // Batches that queued up behind a slow write go out as one (up to mergeUpTo records): after
        // an outage or under a backlog a partition catches up in a few large writes, not many small ones.
        let taken = 1;
        let records = item.records;
        if (records && w.queue.length > 1 && records.length < mergeUpTo) {
          const parts = [records];
          let total = records.length;
          for (let i = 1; i < w.queue.length; i++) {
            const next = w.queue[i]!.records;
            if (!next || total + next.length > mergeUpTo) break;
            parts.push(next);
            total += next.length;
            taken++;
          }
          if (taken > 1) records = parts.flat();
        }
        if (records) {
          const result = await h(records, { signal: w.controller.signal, progress: (o) => void commit(w, o) });
          if (w.controller.signal.aborted) break;
          if (result.commitOffset !== undefined) void commit(w, result.commitOffset);
          if (result.halt) {
            w.halted = true;
            w.queue.length = 0;
            w.queued = 0;
            consumer.pause([{ topic: w.topic, partitions: [w.partition] }]);
            // Later batches were handed over already; fetch from the halted record if resumed.
            if (result.commitOffset !== undefined) {
              consumer.seek({ topic: w.topic, partition: w.partition, offset: result.commitOffset.toString() });
            }
            break;
          }
        } else if (w.wanted >= item.firstOffset) {
          // Markers right after finished records: move the commit past them (lag 0, not 1).
          void commit(w, item.nextOffset);
        }
        const done = w.queue.splice(0, taken);
        w.queued -= records?.length ?? 0;
        const nextOffset = done[done.length - 1]!.nextOffset;
        for (const l of fetchedListeners) l(w.topic, w.partition, nextOffset);
        if (w.backpressured && w.queued <= maxQueued / 2) {
          w.backpressured = false;
          consumer.resume([{ topic: w.topic, partitions: [w.partition] }]);
        }
      }
      await w.commitChain;
      if (w.queue.length === 0 || w.controller.signal.aborted || w.halted) break;
    }
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    if (batch.messages.length === 0 || stopping) return;
    const records = batch.messages.map((m) => toRawRecord(batch.topic, batch.partition, m, batch.highWatermark));
    const w = workerFor(batch.topic, batch.partition);
    if (w.halted) return;
    enqueue(w, {
      records,
      firstOffset: BigInt(records[0]!.offset),
      nextOffset: BigInt(batch.lastOffset()) + 1n,
    });
    // Handed over: kafkajs fetches on from here. Commits are ours, done only when finished.
    payload.resolveOffset(records[records.length - 1]!.offset);
    if (w.queued >= maxQueued) {
      w.backpressured = true;
      payload.pause();
    }
  }

  return {
    async run(h) {
      handler = h;
      await consumer.connect();
      const topics: (string | RegExp)[] = config.topic_pattern ? [new RegExp(config.topic_pattern)] : [...(config.topics ?? [])];
      await consumer.subscribe({ topics, fromBeginning: config.from_beginning });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: config.partitions_consumed_concurrently,
        eachBatch,
      });
    },
    pause(topic, partition) {
      consumer.pause([{ topic, partitions: [partition] }]);
    },
    resume(topic, partition) {
      const w = workers.get(tp(topic, partition));
      if (w) w.halted = false;
      consumer.resume([{ topic, partitions: [partition] }]);
    },
    paused() {
      return consumer.paused();
    },
    onFatal(listener) {
      fatalListeners.add(listener);
      return () => fatalListeners.delete(listener);
    },
    onFetched(listener) {
      fetchedListeners.add(listener);
      return () => fetchedListeners.delete(listener);
    },
    stop(drainMs = 10_000) {
      return (stopping ??= (async () => {
        // Stop fetching but stay in the group, so that what drains can still be committed.
        const subscribed = new Set([...workers.values()].map((w) => w.topic));
        if (subscribed.size > 0) consumer.pause([...subscribed].map((topic) => ({ topic })));
        const running = [...workers.values()].map((w) => w.running ?? w.commitChain);
        const timer = setTimeout(() => {
          for (const w of workers.values()) w.controller.abort(new Error('shutdown: drain timeout'));
        }, drainMs);
        try {
          await Promise.allSettled(running);
          await Promise.allSettled([...workers.values()].map((w) => w.commitChain));
        } finally {
          clearTimeout(timer);
          await consumer.disconnect();
        }
      })());
    },
  };
}
