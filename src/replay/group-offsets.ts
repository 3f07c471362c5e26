import type { KafkaConfig } from '../config/schema.ts';
import { partitionLag, totalLag } from '../metrics/partition-lag.ts';
import { GroupActiveError } from '../consume/group-errors.ts';
import { configuredTopics, isGroupIdle, type GroupAdmin, type GroupDescription } from '../consume/group-admin.ts';
import { resolveBound, selectPartitions, type OffsetBound } from './offset-bound.ts';

export interface PartitionLag {
  readonly topic: string;
  readonly partition: number;
  /** Undefined when the group never committed for the partition. */
  readonly committed: bigint | undefined;
  readonly end: bigint;
  /** Records still to read (see partitionLag); undefined when never committed and not from_beginning. */
  readonly lag: bigint | undefined;
}

export interface GroupOffsets {
  readonly group: GroupDescription;
  readonly partitions: readonly PartitionLag[];
  /** The sum of the lags, undefined when one is unknown (see totalLag). */
  readonly totalLag: bigint | undefined;
  /** kafka.from_beginning: where a partition never committed is read from. */
  readonly fromBeginning: boolean;
}

/**
 * The group's position on each partition of the topics it consumes: the configured topics (a
 * pattern is resolved against today's topics) and any topic a member is assigned.
 */
export async function groupOffsets(admin: GroupAdmin, kafka: KafkaConfig): Promise<GroupOffsets> {
  const group = await admin.describeGroup(kafka.group_id);
  const existing = await admin.topics();
  const topics = new Set(configuredTopics(kafka, existing));
  for (const m of group.members) for (const t of Object.keys(m.assignment)) topics.add(t);
  const partitions: PartitionLag[] = [];
  for (const topic of [...topics].filter((t) => existing.includes(t)).sort()) {
    const [bounds, committed] = await Promise.all([admin.bounds(topic), admin.committed(kafka.group_id, topic)]);
    for (const b of bounds) {
      const c = committed.get(b.partition);
      partitions.push({
        topic,
        partition: b.partition,
        committed: c,
        end: b.high,
        lag: partitionLag({ low: b.low, end: b.high }, c, kafka.from_beginning),
      });
    }
  }
  return { group, partitions, totalLag: totalLag(partitions.map((p) => p.lag)), fromBeginning: kafka.from_beginning };
}

export interface ResetRequest {
  readonly topic: string;
  readonly partition?: number;
  readonly to: OffsetBound;
}

export interface OffsetChange {
  readonly partition: number;
  /** Undefined when the group had no committed offset. */
  readonly from: bigint | undefined;
  readonly to: bigint;
}

export interface ResetPlan {
  readonly groupId: string;
  readonly topic: string;
  readonly changes: readonly OffsetChange[];
}

/** Refuses while the group has members: they would overwrite the new offsets with their own. */
export async function assertGroupIdle(admin: GroupAdmin, groupId: string): Promise<GroupDescription> {
  const group = await admin.describeGroup(groupId);
  if (!isGroupIdle(group.state) || group.members.length > 0) {
    throw new GroupActiveError(groupId, group.state, group.members.length);
  }
  return group;
}

/** Works out old -> new per partition; changes nothing. Refuses an active group. */
export async function planReset(admin: GroupAdmin, groupId: string, request: ResetRequest): Promise<ResetPlan> {
  await assertGroupIdle(admin, groupId);
  const partitions = selectPartitions(request.topic, await admin.bounds(request.topic), request.partition);
  const [targets, committed] = await Promise.all([
    resolveBound(admin, request.topic, partitions, request.to),
    admin.committed(groupId, request.topic),
  ]);
  return {
    groupId,
    topic: request.topic,
    changes: partitions.map((p) => ({ partition: p.partition, from: committed.get(p.partition), to: targets.get(p.partition)! })),
  };
}

/** Commits a plan's offsets; refuses (GroupActiveError) when a member joined since it was made. */
export async function applyReset(admin: GroupAdmin, plan: ResetPlan): Promise<void> {
  await admin.setOffsets(plan.groupId, plan.topic, new Map(plan.changes.map((c) => [c.partition, c.to])));
}
