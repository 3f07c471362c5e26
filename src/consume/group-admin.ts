import { AssignerProtocol, type Admin } from 'kafkajs';
import type { Logger } from 'pino';
import type { KafkaConfig } from '../config/schema.ts';
import { createKafka } from './kafka-client.ts';
import { CdcError, errorMessage } from '../errors.ts';
import { GroupActiveError, OffsetsRequestError } from './group-errors.ts';

/** The topics a config consumes: `kafka.topics`, plus those of `existing` that `kafka.topic_pattern` matches. */
export function configuredTopics(kafka: Pick<KafkaConfig, 'topics' | 'topic_pattern'>, existing: readonly string[]): string[] {
  const topics = new Set<string>(kafka.topics ?? []);
  if (kafka.topic_pattern) {
    const pattern = new RegExp(kafka.topic_pattern);
    for (const t of existing) if (pattern.test(t)) topics.add(t);
  }
  return [...topics].sort();
}

/** A partition's first and end offsets (the end is the next offset to be written). */
export interface PartitionBounds {
  readonly partition: number;
  readonly low: bigint;
  readonly high: bigint;
}

export interface GroupMember {
  readonly memberId: string;
  readonly clientId: string;
  readonly host: string;
  /** Partitions assigned to the member, by topic. */
  readonly assignment: Readonly<Record<string, readonly number[]>>;
}

export interface GroupDescription {
  readonly groupId: string;
  /** Kafka's group state: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead. */
  readonly state: string;
  readonly members: readonly GroupMember[];
}

/**
 * The admin operations replays and offset management need, in the project's types (offsets as
 * bigint): the one place that talks to the kafkajs admin client, so the client can be swapped.
 */
export interface GroupAdmin {
  topics(): Promise<string[]>;
  /** Bounds of every partition, by partition number; fails with UNKNOWN_TOPIC for a missing topic. */
  bounds(topic: string): Promise<PartitionBounds[]>;
  /** Per partition, the first offset whose timestamp is at or after `timestampMs` (the end offset if none). */
  offsetsAt(topic: string, timestampMs: number): Promise<Map<number, bigint>>;
  /** The group's committed offsets for a topic; partitions without one are absent. */
  committed(groupId: string, topic: string): Promise<Map<number, bigint>>;
  describeGroup(groupId: string): Promise<GroupDescription>;
  /** Commits offsets for a group that has no members; refuses (GroupActiveError) otherwise. */
  setOffsets(groupId: string, topic: string, offsets: ReadonlyMap<number, bigint>): Promise<void>;
  /**
   * Commits offsets for a new group (a replay's) by joining it once; the group must have no
   * members. Verified afterwards: kafkajs drops a commit silently when its join failed.
   */
  seedOffsets(groupId: string, topic: string, offsets: ReadonlyMap<number, bigint>): Promise<void>;
  /** Deletes a group without members; a group that does not exist counts as deleted. */
  deleteGroup(groupId: string): Promise<void>;
  close(): Promise<void>;
}

/** Kafka's error code for deleting a group that still has members (they may be leaving now). */
const NON_EMPTY_GROUP = 68;
const GROUP_ID_NOT_FOUND = 69;

export function isGroupIdle(state: string): boolean {
  return state === 'Empty' || state === 'Dead';
}

export async function connectGroupAdmin(config: KafkaConfig, logger: Logger): Promise<GroupAdmin> {
  const log = logger.child({ component: 'group-admin' });
  const kafka = createKafka(config, logger, '-admin');
  const admin: Admin = kafka.admin();
  await admin.connect();

  async function describeGroup(groupId: string): Promise<GroupDescription> {
    const { groups } = await admin.describeGroups([groupId]);
    const group = groups.find((g) => g.groupId === groupId);
    if (!group) return { groupId, state: 'Dead', members: [] };
    return {
      groupId,
      state: group.state,
      members: group.members.map((m) => ({
        memberId: m.memberId,
        clientId: m.clientId,
        host: m.clientHost,
        assignment: decodeAssignment(m.memberAssignment),
      })),
    };
  }

  let closing: Promise<void> | undefined;
  return {
    topics: () => admin.listTopics(),
    async bounds(topic) {
      // Asked first: kafkajs retries an unknown topic for many seconds before giving up.
      if (!(await admin.listTopics()).includes(topic)) {
        throw new OffsetsRequestError(`topic ${topic} does not exist`, 'UNKNOWN_TOPIC');
      }
      const res = await admin.fetchTopicOffsets(topic);
      return res
        .map((p) => ({ partition: p.partition, low: BigInt(p.low), high: BigInt(p.high) }))
        .sort((a, b) => a.partition - b.partition);
    },
    async offsetsAt(topic, timestampMs) {
      const res = await admin.fetchTopicOffsetsByTimestamp(topic, timestampMs);
      return new Map(res.map((p) => [p.partition, BigInt(p.offset)]));
    },
    async committed(groupId, topic) {
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const out = new Map<number, bigint>();
      // -1: nothing committed for the partition.
      for (const p of res?.partitions ?? []) if (BigInt(p.offset) >= 0n) out.set(p.partition, BigInt(p.offset));
      return out;
    },
    describeGroup,
    async setOffsets(groupId, topic, offsets) {
      const group = await describeGroup(groupId);
      if (!isGroupIdle(group.state)) throw new GroupActiveError(groupId, group.state, group.members.length);
      const partitions = [...offsets].map(([partition, offset]) => ({ partition, offset: offset.toString() }));
      try {
        await admin.setOffsets({ groupId, topic, partitions });
      } catch (err) {
        // A member joined between the check and the commit: kafkajs refuses, and so do we.
        if (/no running instances/.test(errorMessage(err))) {
          const now = await describeGroup(groupId);
          throw new GroupActiveError(groupId, now.state, now.members.length);
        }
        throw err;
      }
      log.info({ groupId, topic, offsets: Object.fromEntries([...offsets].map(([p, o]) => [p, o.toString()])) }, 'offsets set');
    },
    async seedOffsets(groupId, topic, offsets) {
      // What admin.setOffsets does too (join, commit, leave), without waiting out a whole fetch
      // (5 s) before leaving.
      const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, allowAutoTopicCreation: false });
      try {
        await consumer.connect();
        await consumer.subscribe({ topics: [topic] });
        await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => undefined });
        consumer.pause([{ topic }]);
        await consumer.commitOffsets([...offsets].map(([partition, offset]) => ({ topic, partition, offset: offset.toString() })));
      } finally {
        await consumer.disconnect();
      }
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const committed = new Map((res?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      const missing = [...offsets].filter(([p, o]) => committed.get(p) !== o).map(([p]) => p);
      if (missing.length > 0) {
        throw new CdcError(`could not commit start offsets to group ${groupId} (partitions ${missing.join(', ')})`, {
          code: 'SEED_OFFSETS_FAILED',
          retriable: true,
        });
      }
    },
    async deleteGroup(groupId) {
      // A member that just left may still be counted for a moment.
      for (let attempt = 1; ; attempt++) {
        try {
          await admin.deleteGroups([groupId]);
          return;
        } catch (err) {
          const codes = deleteGroupsErrorCodes(err);
          if (codes.length > 0 && codes.every((c) => c === GROUP_ID_NOT_FOUND)) return;
          if (!codes.includes(NON_EMPTY_GROUP) || attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    close: () => (closing ??= admin.disconnect()),
  };
}

/**
 * Kafka error codes of a KafkaJSDeleteGroupsError, read by shape: kafkajs spreads its error classes
 * into its CommonJS exports, which ESM named imports cannot see.
 */
function deleteGroupsErrorCodes(err: unknown): number[] {
  const groups: unknown = err instanceof Error ? (err as Error & { groups?: unknown }).groups : undefined;
  if (!Array.isArray(groups)) return [];
  return groups.flatMap((g: unknown) =>
    g !== null && typeof g === 'object' && 'errorCode' in g && typeof g.errorCode === 'number' ? [g.errorCode] : [],
  );
}

function decodeAssignment(buffer: Buffer): Record<string, number[]> {
  if (buffer.length === 0) return {};
  try {
    const assignment = AssignerProtocol.MemberAssignment.decode(buffer)?.assignment ?? {};
    return Object.fromEntries(Object.entries(assignment).map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
  } catch {
    // A member of another protocol (not a plain consumer): its assignment is not ours to read.
    return {};
  }
}
