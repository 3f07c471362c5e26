import type { TimeWindow } from './windows.ts';

/**
 * Session windows with an inactivity gap (Kafka Streams' SessionWindows.ofInactivityGapWithNoGrace):
 * a session is [first event, last event], both inclusive. An event at t joins every session of its
 * key with start - gap <= t <= end + gap (the gap is inclusive), and all of them become one.
 */
export interface SessionMerge {
  /** The session the event belongs to now. */
  readonly session: TimeWindow;
  /** Existing sessions folded into `session` (their aggregates combine into its aggregate). */
  readonly absorbed: TimeWindow[];
  /** Absorbed sessions whose bounds differ from `session`: the runtime deletes their results. */
  readonly mergedAway: TimeWindow[];
}

export function withinGap(session: TimeWindow, tMs: number, gapMs: number): boolean {
  return tMs >= session.start - gapMs && tMs <= session.end + gapMs;
}

/**
 * Where an event at `tMs` goes among one key's sessions `existing` (any order, not overlapping
 * each other). A new session [t, t] when none is within the gap; an event bridging two or more
 * sessions merges them all. Only sessions with end >= t − gap and start <= t + gap matter (Kafka
 * Streams' findSessions range): the runtime may pass just those.
 */
export function mergeSession(existing: readonly TimeWindow[], tMs: number, gapMs: number): SessionMerge {
  if (!Number.isSafeInteger(tMs)) throw new RangeError(`event time must be a whole number of milliseconds, got ${tMs}`);
  const absorbed = existing.filter((s) => withinGap(s, tMs, gapMs)).sort((a, b) => a.start - b.start);
  let start = tMs;
  let end = tMs;
  for (const s of absorbed) {
    start = Math.min(start, s.start);
    end = Math.max(end, s.end);
  }
  const session = { start, end };
  const mergedAway = absorbed.filter((s) => s.start !== start || s.end !== end);
  return { session, absorbed, mergedAway };
}
