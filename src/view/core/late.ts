import { ViewInputError } from './errors.ts';
import { type TimeWindow, type WindowSpec, assignWindows, lastEventMs } from './windows.ts';

function showTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? `${ms} ms` : `${date.toISOString()} (${ms})`;
}

function showWindow(w: TimeWindow, kind: WindowSpec['kind']): string {
  const closing = kind === 'tumbling' || kind === 'hopping' ? ')' : ']';
  return `${kind} window [${showTime(w.start)}, ${showTime(w.end)}${closing}`;
}

/**
 * The error a late change is side-output or dead-lettered with (stage view, code VIEW_LATE): it
 * names the change's time, the window it missed, the watermark and the grace. `window` is the
 * window that closed (for session and sliding windows, the one isLate was asked about); for
 * tumbling and hopping it defaults to the last window holding the change.
 */
export function lateChangeError(
  eventMs: number,
  spec: WindowSpec,
  watermarkMs: number,
  graceMs: number,
  window?: TimeWindow,
): ViewInputError {
  const missed =
    window ??
    (spec.kind === 'tumbling' || spec.kind === 'hopping' ? assignWindows(spec, eventMs).at(-1) : undefined) ??
    { start: eventMs, end: eventMs };
  const closedAt = lastEventMs(missed, spec.kind) + 1 + graceMs;
  return new ViewInputError(
    'VIEW_LATE',
    `change at ${showTime(eventMs)} is too late for ${showWindow(missed, spec.kind)}: ` +
      `the watermark ${showTime(watermarkMs)} reached its close at ${showTime(closedAt)} (grace ${graceMs} ms)`,
  );
}
