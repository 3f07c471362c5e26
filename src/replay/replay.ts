import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/load.ts';
import type { KafkaConfig } from '../config/schema.ts';
import { createChangeConsumer } from '../consume/consumer.ts';
import { createKafka } from '../consume/kafka-client.ts';
import type { CdcError } from '../errors.ts';
import { RouterEvents } from '../events.ts';
import type { RawRecord } from '../model/change-event.ts';
import { buildPipeline } from '../compose/pipeline.ts';
import { OffsetsRequestError } from '../consume/group-errors.ts';
import { connectGroupAdmin, type GroupAdmin } from '../consume/group-admin.ts';
import { resolveBound, selectPartitions, type OffsetBound } from './offset-bound.ts';

export interface ReplayRequest {
  readonly topic: string;
  /** One partition; all of the topic's when absent. */
  readonly partition?: number;
  /** First offset replayed (inclusive): an offset, or the first record at or after a timestamp. */
  readonly from: Extract<OffsetBound, { kind: 'offset' | 'timestamp' }>;
  /** Where the replay stops (exclusive); the end offsets taken when it starts, when absent. */
  readonly until?: Extract<OffsetBound, { kind: 'offset' | 'timestamp' }>;
  /** Resolve and report the ranges, read nothing. */
  readonly dryRun?: boolean;
}

/** The offsets [from, until) of one partition to replay. */
export interface PartitionRange {
  readonly partition: number;
  readonly from: bigint;
  readonly until: bigint;
}

export interface PartitionReplay extends PartitionRange {
  /** Records of the range handed to the pipeline. */
  readonly records: number;
  /** Acknowledged by every sink they were routed to. */
  readonly written: number;
  /** Tombstones, heartbeats, transaction markers, unrouted or filtered changes. */
  readonly skipped: number;
  /** Failed permanently; parked where the live service parks them, or halting the partition. */
  readonly failed: number;
  /** The record this partition's replay stopped at, when a failure could not be parked. */
  readonly halted: { readonly offset: string; readonly error: CdcError } | undefined;
  /** Every offset of the range was read. */
  readonly complete: boolean;
}

export interface ReplaySummary {
  readonly topic: string;
  /** The throwaway consumer group the replay used (deleted afterwards); undefined when nothing was read. */
  readonly group: string | undefined;
  readonly dryRun: boolean;
  readonly interrupted: boolean;
  readonly partitions: readonly PartitionReplay[];
}

/** 0: everything replayed; 1: a record failed permanently; 130: interrupted. */
export function replayExitCode(summary: ReplaySummary): number {
  if (summary.interrupted) return 130;
  return summary.partitions.some((p) => p.failed > 0 || p.halted) ? 1 : 0;
}

/** Resolves a request to an offset range per partition; the end is never past today's end offsets. */
export async function planReplay(admin: GroupAdmin, request: ReplayRequest): Promise<PartitionRange[]> {
  const { from: start, until: end } = request;
  if (start.kind === 'offset' && end?.kind === 'offset' && end.offset < start.offset) {
    throw new OffsetsRequestError(`the range ends (offset ${end.offset}) before it starts (offset ${start.offset})`, 'BAD_RANGE');
  }
  if (start.kind === 'timestamp' && end?.kind === 'timestamp' && end.ms < start.ms) {
    throw new OffsetsRequestError('the range ends (--until-timestamp) before it starts (--from-timestamp)', 'BAD_RANGE');
  }
  const partitions = selectPartitions(request.topic, await admin.bounds(request.topic), request.partition);
  const from = await resolveBound(admin, request.topic, partitions, start);
  const until = end
    ? await resolveBound(admin, request.topic, partitions, end)
    : new Map(partitions.map((p) => [p.partition, p.high]));
  return partitions.map((p) => ({ partition: p.partition, from: from.get(p.partition)!, until: until.get(p.partition)! }));
}

interface PartitionState {
  readonly partition: number;
  readonly from: bigint;
  readonly until: bigint;
  /** Next offset not yet accounted for; records below it are not counted again when redelivered. */
  next: bigint;
  records: number;
  written: number;
  skipped: number;
  failed: number;
  halted: PartitionReplay['halted'];
  done: boolean;
  /** The batch being handled was abandoned: the fetch position after it proves nothing. */
  abandoned: boolean;
  readonly skippedOffsets: Set<string>;
  readonly failedOffsets: Set<string>;
}

function replayGroupId(liveGroup: string): string {
  return `${liveGroup}-replay-${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
}

/**
 * Replays a range of a topic through the pipeline the config describes (same decoder, routes,
 * transforms, sinks and failure handling as the live service), with its own consumer in a
 * throwaway group: the live group's offsets and members are never touched. Stops by itself at
 * the end of the range.
 *
 * kafkajs cannot assign partitions by hand, so the replay's start offsets are committed to a new
 * group before its consumer joins; the first fetch then starts exactly there (a seek after `run`
 * would race the first fetch from the group's default position). The group is deleted afterwards.
 */
export async function runReplay(
  config: Config,
  request: ReplayRequest,
  options: { logger: Logger; signal?: AbortSignal },
): Promise<ReplaySummary> {
  const { topic } = request;
  const log = options.logger.child({ component: 'replay', topic });
  const admin = await connectGroupAdmin(config.kafka, options.logger);
  try {
    const ranges = await planReplay(admin, request);
    const states = new Map<number, PartitionState>(
      ranges.map((r) => [
        r.partition,
        {
          ...r,
          next: r.from,
          records: 0,
          written: 0,
          skipped: 0,
          failed: 0,
          halted: undefined,
          done: r.from >= r.until,
          abandoned: false,
          skippedOffsets: new Set(),
          failedOffsets: new Set(),
        },
      ]),
    );
    const summary = (group: string | undefined, interrupted: boolean): ReplaySummary => ({
      topic,
      group,
      dryRun: request.dryRun ?? false,
      interrupted,
      partitions: [...states.values()].map((s) => ({
        partition: s.partition,
        from: s.from,
        until: s.until,
        records: s.records,
        written: s.written,
        skipped: s.skipped,
        failed: s.failed,
        halted: s.halted,
        complete: s.halted === undefined && s.next >= s.until,
      })),
    });
    if (request.dryRun || [...states.values()].every((s) => s.done)) return summary(undefined, false);

    const group = replayGroupId(config.kafka.group_id);
    // Partitions outside the replay start at their end: they have nothing to deliver.
    const starts = new Map((await admin.bounds(topic)).map((b) => [b.partition, states.get(b.partition)?.from ?? b.high]));
    await admin.seedOffsets(group, topic, starts);
    log.info(
      { group, ranges: ranges.map((r) => ({ partition: r.partition, from: r.from.toString(), until: r.until.toString() })) },
      'replay starting',
    );
    let interrupted = false;
    try {
      interrupted = await consumeRanges(config, topic, group, states, { log, logger: options.logger, signal: options.signal });
    } finally {
      await admin.deleteGroup(group).catch((err: unknown) => log.warn({ err, group }, 'could not delete the replay group'));
    }
    return summary(group, interrupted);
  } finally {
    await admin.close();
  }
}

/** Reads every range to its end (or until aborted) through the pipeline; true when interrupted. */
async function consumeRanges(
  config: Config,
  topic: string,
  group: string,
  states: ReadonlyMap<number, PartitionState>,
  options: { log: Logger; logger: Logger; signal: AbortSignal | undefined },
): Promise<boolean> {
  const { log } = options;
  const events = new RouterEvents();
  const partitionOf = (t: string, p: number) => (t === topic ? states.get(p) : undefined);
  events.on('record.skipped', (e) => partitionOf(e.topic, e.partition)?.skippedOffsets.add(e.offset));
  events.on('record.failed', (e) => partitionOf(e.topic, e.partition)?.failedOffsets.add(e.offset));

  let interrupted = false;
  let finish = () => {};
  const allDone = new Promise<void>((resolve) => (finish = resolve));
  const markDone = (s: PartitionState) => {
    if (s.done) return;
    s.done = true;
    log.info({ partition: s.partition, records: s.records, halted: s.halted?.offset }, 'partition replayed');
    if ([...states.values()].every((x) => x.done)) finish();
  };
  const onAbort = () => {
    interrupted = true;
    finish();
  };
  if (options.signal?.aborted) return true;
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const pipeline = await buildPipeline(config, { logger: options.logger, events });
  const kafka: KafkaConfig = { ...config.kafka, group_id: group, topics: [topic], topic_pattern: undefined };
  const consumer = createChangeConsumer(createKafka(config.kafka, options.logger, '-replay'), kafka, events, options.logger, {
    mergeUpTo: config.maxBatchSize,
  });
  try {
    // The end of a range can be a record the pipeline never sees (a transaction marker).
    consumer.onFetched((t, p, nextOffset) => {
      const s = partitionOf(t, p);
      if (!s || s.done) return;
      if (s.abandoned) {
        s.abandoned = false;
        return;
      }
      if (nextOffset > s.next) s.next = nextOffset;
      if (s.next >= s.until) markDone(s);
    });
    await consumer.run(async (records, control) => {
      const s = partitionOf(records[0]!.topic, records[0]!.partition);
      // Done (or not replayed): pause it, commit nothing.
      if (!s || s.done) return { commitOffset: undefined, halt: true };
      const last = BigInt(records[records.length - 1]!.offset);
      const batch = records.filter((r) => BigInt(r.offset) >= s.next && BigInt(r.offset) < s.until);
      if (batch.length > 0) {
        // Offsets finished while the batch goes on are reported through progress, not in the outcome.
        let finishedUpTo = s.next;
        const outcome = await pipeline.processor.process(batch, {
          signal: control.signal,
          progress: (offset) => {
            if (offset > finishedUpTo) finishedUpTo = offset;
            control.progress(offset);
          },
        });
        if (outcome.aborted) {
          // Redelivered after the group rebalances; only what finished is counted now.
          if (outcome.commitOffset !== undefined && outcome.commitOffset > finishedUpTo) finishedUpTo = outcome.commitOffset;
          account(s, batch, finishedUpTo - 1n);
          s.next = finishedUpTo;
          s.abandoned = true;
          return { commitOffset: outcome.commitOffset, halt: false };
        }
        if (outcome.halted) {
          account(s, batch, BigInt(outcome.halted.offset));
          s.halted = outcome.halted;
          markDone(s);
          return { commitOffset: outcome.commitOffset, halt: true };
        }
        account(s, batch, last);
        if (last + 1n > s.next) s.next = last + 1n;
        if (s.next >= s.until) markDone(s);
        return { commitOffset: outcome.commitOffset, halt: s.done };
      }
      if (last + 1n >= s.until) {
        s.next = last + 1n > s.next ? last + 1n : s.next;
        markDone(s);
      }
      return { commitOffset: undefined, halt: s.done };
    });
    await allDone;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    try {
      await consumer.stop();
    } finally {
      await pipeline.close();
    }
  }
  return interrupted;
}

/** Counts a handled batch's records up to `limit` (inclusive) as written, skipped or failed. */
function account(s: PartitionState, batch: readonly RawRecord[], limit: bigint): void {
  for (const r of batch) {
    if (BigInt(r.offset) > limit) break;
    s.records++;
    if (s.failedOffsets.has(r.offset)) s.failed++;
    else if (s.skippedOffsets.has(r.offset)) s.skipped++;
    else s.written++;
  }
  s.skippedOffsets.clear();
  s.failedOffsets.clear();
}
