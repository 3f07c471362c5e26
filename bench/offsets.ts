/** A consumer group's committed offsets against a topic's end offsets, polled cheaply. */
import type { Admin } from 'kafkajs';

export async function endOffsets(admin: Admin, topic: string): Promise<Map<number, string>> {
  return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p.high]));
}

/** Where a group's committed offsets are against the end offsets. */
export async function commitState(admin: Admin, group: string, topic: string, end: ReadonlyMap<number, string>): Promise<{ done: boolean; total: number; behind: string[] }> {
  // A failed poll (the coordinator busy, a timeout) only means: not known yet.
  const [res] = await admin.fetchOffsets({ groupId: group, topics: [topic] }).catch(() => []);
  const committed = new Map((res?.partitions ?? []).map((p) => [p.partition, p.offset]));
  const behind = [...end].filter(([p, e]) => committed.get(p) !== e).map(([p, e]) => `${p}: ${committed.get(p) ?? '-'}/${e}`);
  const total = [...committed.values()].reduce((n, o) => n + Math.max(0, Number(o)), 0);
  return { done: behind.length === 0, total, behind };
}

export async function reachedEnd(admin: Admin, group: string, topic: string, end: ReadonlyMap<number, string>): Promise<boolean> {
  return (await commitState(admin, group, topic, end)).done;
}

/**
 * One poll after another: done when the committed offsets reach the end offsets, or `stalled` (why)
 * when they have not moved for `stallMs` short of the end (a stuck partition).
 */
export function commitWatch(admin: Admin, group: string, topic: string, end: ReadonlyMap<number, string>, stallMs: number) {
  let lastTotal = -1;
  let lastMove = Date.now();
  return async (): Promise<{ done: boolean; stalled?: string }> => {
    const state = await commitState(admin, group, topic, end);
    if (state.done) return { done: true };
    const now = Date.now();
    if (state.total !== lastTotal) {
      lastTotal = state.total;
      lastMove = now;
    } else if (now - lastMove >= stallMs) {
      return {
        done: false,
        stalled: `committed offsets stopped moving for ${Math.round(stallMs / 1000)} s short of the end (partition: committed/end: ${state.behind.join(', ')})`,
      };
    }
    return { done: false };
  };
}
