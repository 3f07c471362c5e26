import { ViewSpecError } from './errors.ts';

/**
 * Window definitions, in Kafka Streams' vocabulary. Times are epoch milliseconds (safe integers),
 * negative ones included.
 */
export type WindowSpec =
  | { readonly kind: 'tumbling'; readonly sizeMs: number; readonly offsetMs?: number }
  | { readonly kind: 'hopping'; readonly sizeMs: number; readonly advanceMs: number; readonly offsetMs?: number }
  | { readonly kind: 'sliding'; readonly differenceMs: number }
  | { readonly kind: 'session'; readonly gapMs: number }
  | { readonly kind: 'global' };

export type WindowKind = WindowSpec['kind'];

/**
 * Bounds of one window. Tumbling and hopping windows are half-open [start, end). Sliding and
 * session windows are closed [start, end]: both ends are event times that belong to the window
 * (Kafka Streams' SlidingWindows and SessionWindows). `lastEventMs` gives the last time inside.
 */
export interface TimeWindow {
  readonly start: number;
  readonly end: number;
}

/** The one window of kind global: every time belongs to it and it never closes. */
export const GLOBAL_WINDOW: TimeWindow = { start: Number.MIN_SAFE_INTEGER, end: Number.MAX_SAFE_INTEGER };

/** A hopping window set where one event lands in more windows than this is refused (fan-out). */
export const MAX_WINDOWS_PER_EVENT = 1000;

function checkDuration(name: string, value: unknown, allowZero = false): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || (!allowZero && value === 0)) {
    throw new ViewSpecError(`${name} must be a whole number of milliseconds ${allowZero ? '>= 0' : '> 0'}, got ${String(value)}`);
  }
}

function checkOffset(name: string, offset: number | undefined, period: number): void {
  if (offset === undefined) return;
  if (!Number.isSafeInteger(offset) || Math.abs(offset) >= period) {
    throw new ViewSpecError(`${name} must be a whole number of milliseconds with |offset| < ${period}, got ${String(offset)}`);
  }
}

function checkHopping(spec: Extract<WindowSpec, { kind: 'hopping' }>): void {
  checkDuration('hopping window sizeMs', spec.sizeMs);
  checkDuration('hopping window advanceMs', spec.advanceMs);
  if (spec.advanceMs > spec.sizeMs) {
    throw new ViewSpecError(
      `hopping window advanceMs (${spec.advanceMs}) must not exceed sizeMs (${spec.sizeMs}): ` +
        'events between windows would belong to none',
    );
  }
  const perEvent = Math.ceil(spec.sizeMs / spec.advanceMs);
  if (perEvent > MAX_WINDOWS_PER_EVENT) {
    throw new ViewSpecError(
      `hopping window sizeMs / advanceMs puts each event in ${perEvent} windows (at most ${MAX_WINDOWS_PER_EVENT})`,
    );
  }
  checkOffset('hopping window offsetMs', spec.offsetMs, spec.advanceMs);
}

/** Throws ViewSpecError naming the field when a spec cannot work. */
export function validateWindowSpec(spec: WindowSpec): WindowSpec {
  switch (spec.kind) {
    case 'tumbling':
      checkDuration('tumbling window sizeMs', spec.sizeMs);
      checkOffset('tumbling window offsetMs', spec.offsetMs, spec.sizeMs);
      return spec;
    case 'hopping':
      checkHopping(spec);
      return spec;
    case 'sliding':
      checkDuration('sliding window differenceMs', spec.differenceMs, true);
      return spec;
    case 'session':
      checkDuration('session window gapMs', spec.gapMs, true);
      return spec;
    case 'global':
      return spec;
  }
}

/** x mod m in [0, m) for negative x too (JavaScript's % keeps the dividend's sign). */
function floorMod(x: number, m: number): number {
  const r = x % m;
  return r < 0 ? r + m : r;
}

function checkTime(tMs: number): void {
  if (!Number.isSafeInteger(tMs)) throw new RangeError(`event time must be a whole number of milliseconds, got ${tMs}`);
}

/**
 * The windows an event at `tMs` belongs to, ascending by start. Tumbling: the one window
 * [start, start + size) with start = offset + k·size <= t (floor, not truncation, so negative
 * times too): PostgreSQL's date_bin(size, ts, 'epoch' + offset). Hopping: every window with start
 * = offset + k·advance and start <= t < start + size (Kafka Streams' TimeWindows.advanceBy, but
 * without its clamp at time 0). Global: the global window. Sliding and session windows depend on
 * the key's other events: see sliding.ts and sessions.ts.
 */
export function assignWindows(spec: WindowSpec, tMs: number): TimeWindow[] {
  checkTime(tMs);
  switch (spec.kind) {
    case 'tumbling': {
      const start = tMs - floorMod(tMs - (spec.offsetMs ?? 0), spec.sizeMs);
      return [{ start, end: start + spec.sizeMs }];
    }
    case 'hopping': {
      const last = tMs - floorMod(tMs - (spec.offsetMs ?? 0), spec.advanceMs);
      const out: TimeWindow[] = [];
      for (let start = last; start > tMs - spec.sizeMs; start -= spec.advanceMs) {
        out.push({ start, end: start + spec.sizeMs });
      }
      return out.reverse();
    }
    case 'global':
      return [GLOBAL_WINDOW];
    case 'sliding':
    case 'session':
      throw new ViewSpecError(
        `${spec.kind} windows depend on the key's other events: use ${spec.kind === 'sliding' ? 'slidingWindowsOnAdd' : 'mergeSession'}`,
      );
  }
}

/** The last event time inside `w`: end - 1 for half-open windows, end for closed ones. */
export function lastEventMs(w: TimeWindow, kind: WindowKind): number {
  return kind === 'tumbling' || kind === 'hopping' ? w.end - 1 : w.end;
}

/**
 * Watermark W means: every event with time < W has been seen (up to the out-of-orderness bound).
 * A window is closed, its result final and later events for it late, once
 * W > lastEventMs(w) + grace, i.e. W >= end + grace for tumbling and hopping (end exclusive) and
 * W >= end + 1 + grace for sliding and session (end inclusive). This is Kafka Streams' rule with
 * the watermark in place of stream time, and Flink's (window.maxTimestamp() + allowedLateness <
 * watermark). The global window never closes; nothing closes before any watermark exists.
 */
export function windowClosed(w: TimeWindow, watermarkMs: number | null, graceMs: number, kind: WindowKind): boolean {
  if (watermarkMs === null || kind === 'global') return false;
  return watermarkMs > lastEventMs(w, kind) + graceMs;
}

/**
 * Whether an event at `eventMs` is too late to change any window: every window it would update is
 * closed. Tumbling: its window. Hopping: the last of its windows. Sliding: the event's own right
 * window [t+1, t+1+difference] (the latest window whose existence it decides; Kafka Streams drops
 * on the same window). Session: pass the session mergeSession returned (a late event can still
 * extend an open session); without it the event's own session [t, t] is used. Global: never.
 * An event that is not late may still fall in some closed windows (hopping, sliding): the
 * runtime skips those with windowClosed, as Kafka Streams does.
 */
export function isLate(
  eventMs: number,
  watermarkMs: number | null,
  graceMs: number,
  spec: WindowSpec,
  session?: TimeWindow,
): boolean {
  switch (spec.kind) {
    case 'tumbling':
    case 'hopping': {
      const windows = assignWindows(spec, eventMs);
      const last = windows[windows.length - 1];
      return last !== undefined && windowClosed(last, watermarkMs, graceMs, spec.kind);
    }
    case 'sliding': {
      const right = { start: eventMs + 1, end: eventMs + 1 + spec.differenceMs };
      return windowClosed(right, watermarkMs, graceMs, 'sliding');
    }
    case 'session':
      return windowClosed(session ?? { start: eventMs, end: eventMs }, watermarkMs, graceMs, 'session');
    case 'global':
      return false;
  }
}
