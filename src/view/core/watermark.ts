/*
 * Watermarks: Flink's bounded out-of-orderness with idleness, per input partition, made safe for
 * change streams. A view's watermark W says: every change with event time < W has been seen,
 * give or take the out-of-orderness bound (see windows.ts for how W closes windows).
 *
 * Per partition the runtime keeps a PartitionClock in the state store (JSON), so every instance
 * of the consumer group computes the same watermark from the same rows:
 * - observe() for each applied change: the highest event time seen, and when (wall clock);
 * - heartbeat() for each Debezium heartbeat of the connector writing the partition;
 * - setCaughtUp() from the consumer's lag (lag 0 as of a fetch that began after the latest
 *   heartbeat was read, so a heartbeat never vouches for changes still in the partition).
 */

export interface PartitionClock {
  /** Highest event time of a live (not snapshot) change seen; null before the first. */
  readonly maxEventMs: number | null;
  /** Wall clock of the last change of any kind read from the partition (starts the idle timer). */
  readonly lastEventWallMs: number;
  /** Highest Debezium heartbeat time seen for the connector; null before the first. */
  readonly lastHeartbeatMs: number | null;
  /** Consumer lag 0: nothing written to the partition is still unread. */
  readonly caughtUp: boolean;
}

export interface WatermarkOptions {
  /** How far behind the highest event time a change may arrive and still be on time. */
  readonly outOfOrdernessMs: number;
  /** A caught-up partition with no change for this long stops holding the watermark back. */
  readonly idleTimeoutMs: number;
  /** The view's watermark so far: the result never goes below it. */
  readonly previousMs?: number | null;
}

export function newPartitionClock(nowWallMs: number): PartitionClock {
  return { maxEventMs: null, lastEventWallMs: nowWallMs, lastHeartbeatMs: null, caughtUp: false };
}

function checkTime(name: string, ms: number): void {
  if (!Number.isSafeInteger(ms)) throw new RangeError(`${name} must be a whole number of milliseconds, got ${ms}`);
}

/**
 * A change was read. Snapshot reads (op r) never advance maxEventMs: their ts_ms is the time the
 * snapshot read the row, later than live changes still to come, and a column's value in a
 * snapshot row says nothing about which live changes are done either. They still count as
 * activity (not idle). A snapshot-only partition therefore closes nothing until live changes,
 * heartbeats or idleness move it.
 */
export function observe(clock: PartitionClock, eventMs: number, kind: { readonly snapshot: boolean }, nowWallMs: number): PartitionClock {
  checkTime('event time', eventMs);
  const maxEventMs = kind.snapshot || (clock.maxEventMs !== null && clock.maxEventMs >= eventMs) ? clock.maxEventMs : eventMs;
  return { ...clock, maxEventMs, lastEventWallMs: Math.max(clock.lastEventWallMs, nowWallMs) };
}

/** A Debezium heartbeat at `tsMs`: the connector has no change older than it still to write. */
export function heartbeat(clock: PartitionClock, tsMs: number): PartitionClock {
  checkTime('heartbeat time', tsMs);
  if (clock.lastHeartbeatMs !== null && clock.lastHeartbeatMs >= tsMs) return clock;
  return { ...clock, lastHeartbeatMs: tsMs };
}

export function setCaughtUp(clock: PartitionClock, caughtUp: boolean): PartitionClock {
  return clock.caughtUp === caughtUp ? clock : { ...clock, caughtUp };
}

/**
 * How far a partition's event time has provably come: its highest live event time, and when it
 * has read everything (caught up) also the latest heartbeat.
 */
export function partitionTimeMs(clock: PartitionClock): number | null {
  const beat = clock.caughtUp ? clock.lastHeartbeatMs : null;
  if (clock.maxEventMs === null) return beat;
  return beat === null ? clock.maxEventMs : Math.max(clock.maxEventMs, beat);
}

/**
 * Idle needs both: caught up (lag 0) and nothing read for idleTimeoutMs. A timer alone would
 * declare a partition idle while it is merely slow or lagging, and drop its changes as late
 * (Flink's withIdleness warning).
 */
export function isIdle(clock: PartitionClock, idleTimeoutMs: number, nowWallMs: number): boolean {
  return clock.caughtUp && nowWallMs - clock.lastEventWallMs >= idleTimeoutMs;
}

/**
 * The view's watermark: the minimum over its non-idle partitions of partition time minus the
 * out-of-orderness bound; null until every non-idle partition has a time. When every partition
 * is idle, everything written has been read and nothing came for a while: the watermark moves to
 * the highest partition time (minus the bound) so the last windows close instead of waiting for
 * the next change. Never below `previousMs`.
 */
export function viewWatermark(clocks: readonly PartitionClock[], options: WatermarkOptions, nowWallMs: number): number | null {
  const previous = options.previousMs ?? null;
  const active = clocks.filter((c) => !isIdle(c, options.idleTimeoutMs, nowWallMs));
  let candidate: number | null;
  if (active.length > 0) {
    const times = active.map(partitionTimeMs);
    candidate = times.some((t) => t === null) ? null : Math.min(...(times as number[]));
  } else {
    const times = clocks.map(partitionTimeMs).filter((t): t is number => t !== null);
    candidate = times.length > 0 ? Math.max(...times) : null;
  }
  if (candidate === null) return previous;
  const watermark = candidate - options.outOfOrdernessMs;
  return previous === null ? watermark : Math.max(previous, watermark);
}
