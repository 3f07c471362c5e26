import type { BatchTimings } from '../events.ts';

/** Called once per committed record: seconds from its Kafka timestamp and from its source ts_ms (NaN if none). */
export type LatencyObserver = (topic: string, fromAppendSeconds: number, fromSourceSeconds: number) => void;

export interface CommitLatencyTracker {
  /** A batch went through the pipeline; its records are observed once a commit covers them. */
  processed(topic: string, partition: number, timings: BatchTimings, nowMs?: number): void;
  /** Everything before `offset` is committed. */
  committed(topic: string, partition: number, offset: bigint, nowMs?: number): void;
  /** Forgets partitions this member no longer owns (their records are committed by someone else). */
  retain(assignment: Readonly<Record<string, readonly number[]>>): void;
  pendingRecords(): number;
}

interface PendingBatch {
  readonly timings: BatchTimings;
  next: number;
  end: number;
}

interface PartitionState {
  committed: bigint;
  readonly pending: PendingBatch[];
}

/**
 * End-to-end latency is measured to the commit, and a batch's commit can come before its
 * `batch.processed` (progress commits while a sink retries) or after it: records wait here, per
 * partition, until a commit covers them. Bounded: a partition halted at a record keeps at most what
 * was processed after it, and beyond `maxPendingRecords` the oldest batches are dropped unobserved.
 */
export function createCommitLatencyTracker(observe: LatencyObserver, maxPendingRecords = 200_000): CommitLatencyTracker {
  const partitions = new Map<string, PartitionState>();
  let pendingTotal = 0;
  const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;

  function stateOf(topic: string, partition: number): PartitionState {
    const k = key(topic, partition);
    let s = partitions.get(k);
    if (!s) partitions.set(k, (s = { committed: -1n, pending: [] }));
    return s;
  }

  function drain(topic: string, s: PartitionState, nowMs: number): void {
    while (s.pending.length > 0) {
      const b = s.pending[0]!;
      const { offsets, appendMs, sourceMs } = b.timings;
      while (b.next < b.end && offsets[b.next]! < s.committed) {
        const source = sourceMs[b.next]!;
        observe(
          topic,
          Math.max(0, nowMs - appendMs[b.next]!) / 1000,
          Number.isNaN(source) ? NaN : Math.max(0, nowMs - source) / 1000,
        );
        b.next++;
        pendingTotal--;
      }
      if (b.next < b.end) return;
      s.pending.shift();
    }
  }

  /** Drops pending records at or after `offset`: they are being delivered again. */
  function truncate(s: PartitionState, offset: bigint): void {
    while (s.pending.length > 0) {
      const b = s.pending[s.pending.length - 1]!;
      let end = b.end;
      while (end > b.next && b.timings.offsets[end - 1]! >= offset) end--;
      pendingTotal -= b.end - end;
      b.end = end;
      if (end > b.next) return;
      s.pending.pop();
    }
  }

  function enforceBound(): void {
    for (const s of partitions.values()) {
      while (pendingTotal > maxPendingRecords && s.pending.length > 0) {
        const b = s.pending.shift()!;
        pendingTotal -= b.end - b.next;
      }
    }
  }

  return {
    processed(topic, partition, timings, nowMs = Date.now()) {
      const first = timings.offsets[0];
      if (first === undefined) return;
      const s = stateOf(topic, partition);
      truncate(s, first);
      s.pending.push({ timings, next: 0, end: timings.offsets.length });
      pendingTotal += timings.offsets.length;
      drain(topic, s, nowMs);
      if (pendingTotal > maxPendingRecords) enforceBound();
    },
    committed(topic, partition, offset, nowMs = Date.now()) {
      const s = stateOf(topic, partition);
      if (offset > s.committed) s.committed = offset;
      drain(topic, s, nowMs);
    },
    retain(assignment) {
      const owned = new Set(Object.entries(assignment).flatMap(([t, ps]) => ps.map((p) => key(t, p))));
      for (const [k, s] of partitions) {
        if (owned.has(k)) continue;
        for (const b of s.pending) pendingTotal -= b.end - b.next;
        partitions.delete(k);
      }
    },
    pendingRecords: () => pendingTotal,
  };
}
