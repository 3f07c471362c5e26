import { isUnavailable, type ChangeEvent } from '../model/change-event.ts';
import type { JsonValue } from './core/aggregation.ts';
import { lateChangeError, ViewLateError } from './core/late.ts';
import { newPartitionClock, observe, setCaughtUp, viewWatermark, type PartitionClock } from './core/watermark.ts';
import { windowClosed } from './core/windows.ts';
import { partitionKey } from './state-store.ts';
import { COMMIT_TIME_COLUMN, TABLE_COLUMN, type Contribution, type ViewPlan } from './view-plan.ts';

/** The event time of a change as the view reads it: its time column, or the commit time. */
export function changeTimeMs(plan: ViewPlan, event: ChangeEvent): number | undefined {
  const commitMs = event.source.tsMs ?? event.tsMs ?? event.kafka.timestamp;
  const row = event.after ?? event.before;
  if (row === null || Object.values(row).some(isUnavailable)) return plan.eventTime === undefined ? commitMs : undefined;
  try {
    // Through the view's own filter and map: the time column may be one the map makes.
    const table = plan.inputs.length > 1 ? { [TABLE_COLUMN]: event.table.id } : {};
    return plan.eventTimeOf({ ...row, [COMMIT_TIME_COLUMN]: commitMs, ...table });
  } catch {
    return undefined;
  }
}

/**
 * A change that would add to or retract from a window the watermark has closed (end + grace) is
 * late: it changes nothing and goes to the dead-letter queue, saying which window and watermark.
 */
export function rejectLate(plan: ViewPlan, event: ChangeEvent, watermarkMs: number | null, ...contributions: (readonly Contribution[])[]): void {
  if (watermarkMs === null || !plan.window) return;
  for (const c of contributions.flat()) {
    if (c.window && windowClosed(c.window, watermarkMs, plan.time.graceMs, plan.window.kind)) {
      // The change's time only names it in the error: worked out here, not for every change.
      const error = lateChangeError(changeTimeMs(plan, event) ?? c.window.start, plan.window, watermarkMs, plan.time.graceMs, c.window);
      throw new ViewLateError(`view ${plan.name}, group ${JSON.stringify(c.groupKey)}: ${error.message}`, error.eventMs, watermarkMs, c.window);
    }
  }
}

/**
 * Moves the clocks of the partitions a batch read: the highest live event time (snapshot reads
 * hold back), the wall time of the last read, and whether the partition was read to its end.
 */
export function advanceClocks(
  plan: ViewPlan,
  stored: ReadonlyMap<string, JsonValue>,
  read: readonly { readonly event: ChangeEvent; readonly applied: boolean }[],
  nowMs: number,
): Map<string, PartitionClock> {
  const clocks = new Map<string, PartitionClock>();
  for (const { event, applied } of read) {
    const p = partitionKey(event.kafka.topic, event.kafka.partition);
    let clock = clocks.get(p) ?? ((stored.get(p) as unknown as PartitionClock | undefined) ?? newPartitionClock(nowMs));
    const t = applied ? changeTimeMs(plan, event) : undefined;
    clock = t === undefined ? { ...clock, lastEventWallMs: nowMs } : observe(clock, Math.floor(t), { snapshot: event.op === 'r' }, nowMs);
    const hw = event.kafka.highWatermark;
    clocks.set(p, setCaughtUp(clock, hw !== undefined && BigInt(event.kafka.offset) + 1n >= BigInt(hw)));
  }
  return clocks;
}

/**
 * The view's watermark over every partition's clock (this batch's moved ones included). `waiting`:
 * partitions of the input topics with records still to read; one the view has never read has no
 * clock yet and holds the watermark back (its records may be older than any time seen).
 */
export function watermarkOf(
  plan: ViewPlan,
  stored: ReadonlyMap<string, JsonValue>,
  moved: ReadonlyMap<string, PartitionClock>,
  previousMs: number | null,
  nowMs: number,
  waiting: ReadonlySet<string> = new Set(),
): number | null {
  const all = new Map<string, PartitionClock>();
  for (const [p, c] of stored) all.set(p, c as unknown as PartitionClock);
  for (const [p, c] of moved) all.set(p, c);
  for (const p of waiting) if (!all.has(p)) all.set(p, newPartitionClock(nowMs));
  return viewWatermark(
    [...all.values()],
    { outOfOrdernessMs: plan.time.outOfOrdernessMs, idleTimeoutMs: plan.time.idleTimeoutMs, previousMs },
    nowMs,
  );
}
