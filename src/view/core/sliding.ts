import type { TimeWindow } from './windows.ts';

/*
 * Sliding windows as Kafka Streams defines them (SlidingWindows.ofTimeDifferenceWithNoGrace, both
 * ends inclusive, size = time difference d). For one key's events, the windows that exist are:
 * - the left window [r - d, r] of every event time r (it holds r, so it is never empty);
 * - the right window [r + 1, r + 1 + d] of every event time r, when an event falls inside it.
 * A window is named by its start; a left and a right window with the same start are one window.
 * Every distinct set of events that some d-long window can hold is exactly one of these. Unlike
 * Kafka Streams, times before d are not folded into one [0, d] window: negative starts are fine.
 *
 * Inputs are one key's event times, ascending (duplicates allowed: two events at one time). For an
 * event at t only the times in slidingFetchRange(t, d) = [t − d − 1, t + d + 1] matter: the
 * runtime loads just those.
 */

export interface SlidingWindowChange {
  readonly window: TimeWindow;
  /** Event times inside the window after the change, ascending. */
  readonly members: number[];
  /** The window did not exist before the change. */
  readonly created: boolean;
}

export interface SlidingRemoval {
  /** Windows that still exist and lost the event. */
  readonly changed: SlidingWindowChange[];
  /** Windows that no longer exist (their last event left, or the event that made them went): delete their results. */
  readonly removed: TimeWindow[];
}

/** The event times an add or remove at `tMs` depends on (both ends inclusive). */
export function slidingFetchRange(tMs: number, differenceMs: number): TimeWindow {
  return { start: tMs - differenceMs - 1, end: tMs + differenceMs + 1 };
}

/** First index with times[i] >= t. */
function lowerBound(times: readonly number[], t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((times[mid] as number) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function between(times: readonly number[], from: number, to: number): number[] {
  return times.slice(lowerBound(times, from), lowerBound(times, to + 1));
}

function has(times: readonly number[], t: number): boolean {
  return times[lowerBound(times, t)] === t;
}

/** Whether the window starting at `start` exists for these events. */
export function slidingWindowExists(times: readonly number[], start: number, differenceMs: number): boolean {
  const end = start + differenceMs;
  if (has(times, end)) return true; // left window of the event at `end`
  return has(times, start - 1) && between(times, start, end).length > 0; // right window of start - 1
}

/** Every window of the events, ascending by start (the brute-force definition; also for rebuilds). */
export function slidingWindowsOf(times: readonly number[], differenceMs: number): TimeWindow[] {
  const starts = new Set<number>();
  for (const r of times) {
    starts.add(r - differenceMs);
    if (slidingWindowExists(times, r + 1, differenceMs)) starts.add(r + 1);
  }
  return [...starts].sort((a, b) => a - b).map((start) => ({ start, end: start + differenceMs }));
}

function insertSorted(times: readonly number[], t: number): number[] {
  const out = times.slice();
  out.splice(lowerBound(times, t), 0, t);
  return out;
}

/** Starts of windows that may contain t or are t's own right window: the only ones an event at t touches. */
function candidateStarts(times: readonly number[], t: number, differenceMs: number): number[] {
  const starts = new Set<number>([t - differenceMs, t + 1]);
  // Left windows containing t: events in [t, t + d]; right windows containing t: events in [t - d - 1, t - 1].
  for (const r of between(times, t, t + differenceMs)) starts.add(r - differenceMs);
  for (const r of between(times, t - differenceMs - 1, t - 1)) starts.add(r + 1);
  return [...starts].sort((a, b) => a - b);
}

/**
 * The windows an event at `tMs` changes or creates, given the key's existing event times
 * (ascending): every window that holds it (their content changed), and windows that now exist
 * and did not before (the event's left window, the right window of the event before it, its own
 * right window when a later event falls in it). Adding an event never removes a window.
 */
export function slidingWindowsOnAdd(times: readonly number[], tMs: number, differenceMs: number): SlidingWindowChange[] {
  const after = insertSorted(times, tMs);
  const out: SlidingWindowChange[] = [];
  for (const start of candidateStarts(after, tMs, differenceMs)) {
    const end = start + differenceMs;
    if (!slidingWindowExists(after, start, differenceMs)) continue;
    const created = !slidingWindowExists(times, start, differenceMs);
    if (!created && (tMs < start || tMs > end)) continue;
    out.push({ window: { start, end }, members: between(after, start, end), created });
  }
  return out;
}

/**
 * The inverse of slidingWindowsOnAdd, for retracting one event at `tMs` (which must be among
 * `times`): windows that held it and still exist, and windows that no longer exist.
 */
export function slidingWindowsOnRemove(times: readonly number[], tMs: number, differenceMs: number): SlidingRemoval {
  const at = lowerBound(times, tMs);
  if (times[at] !== tMs) throw new RangeError(`no event at ${tMs} to remove`);
  const after = times.slice();
  after.splice(at, 1);
  const changed: SlidingWindowChange[] = [];
  const removed: TimeWindow[] = [];
  for (const start of candidateStarts(times, tMs, differenceMs)) {
    const end = start + differenceMs;
    if (!slidingWindowExists(times, start, differenceMs)) continue;
    if (!slidingWindowExists(after, start, differenceMs)) removed.push({ start, end });
    else if (tMs >= start && tMs <= end) changed.push({ window: { start, end }, members: between(after, start, end), created: false });
  }
  return { changed, removed };
}
