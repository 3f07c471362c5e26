import { CdcError } from '../../errors.ts';
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
 * A change later than its window's close (watermark past end + grace). Not an input error: the
 * change is valid, only too late, so it has its own class; never retriable.
 */
export class ViewLateError extends CdcError {
  override readonly stage = 'view';
  readonly eventMs: number;
  readonly watermarkMs: number;
  readonly window: TimeWindow;
  constructor(message: string, eventMs: number, watermarkMs: number, window: TimeWindow) {
    super(message, { code: 'VIEW_LATE', retriable: false });
    this.eventMs = eventMs;
    this.watermarkMs = watermarkMs;
    this.window = window;
  }
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
): ViewLateError {
  const missed =
    window ??
    (spec.kind === 'tumbling' || spec.kind === 'hopping' ? assignWindows(spec, eventMs).at(-1) : undefined) ??
    { start: eventMs, end: eventMs };
  const closedAt = lastEventMs(missed, spec.kind) + 1 + graceMs;
  return new ViewLateError(
    `change at ${showTime(eventMs)} is too late for ${showWindow(missed, spec.kind)}: ` +
      `the watermark ${showTime(watermarkMs)} reached its close at ${showTime(closedAt)} (grace ${graceMs} ms)`,
    eventMs,
    watermarkMs,
    missed,
  );
}
