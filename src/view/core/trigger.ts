import { ViewSpecError } from './errors.ts';

/**
 * When a global window (one result per key, no time bounds) emits. `count`: after every N changes
 * to the key's result. `time`: at most once per interval of a clock the runtime picks (the
 * watermark for event time, the wall clock for processing time), aligned to multiples of the
 * interval since the epoch and only when something changed since the last emit.
 */
export type GlobalTrigger = { readonly kind: 'count'; readonly every: number } | { readonly kind: 'time'; readonly everyMs: number };

/** Per key, JSON: changes not yet emitted and the interval of the last time-triggered emit. */
export interface TriggerState {
  readonly pending: number;
  readonly lastFireBucket: number | null;
}

export interface TriggerStep {
  readonly state: TriggerState;
  readonly fire: boolean;
}

export function validateTrigger(trigger: GlobalTrigger): GlobalTrigger {
  const n = trigger.kind === 'count' ? trigger.every : trigger.everyMs;
  if (!Number.isSafeInteger(n) || n <= 0) {
    const field = trigger.kind === 'count' ? 'every' : 'everyMs';
    throw new ViewSpecError(`global window ${trigger.kind} trigger ${field} must be a whole number > 0, got ${String(n)}`);
  }
  return trigger;
}

export function newTriggerState(): TriggerState {
  return { pending: 0, lastFireBucket: null };
}

function bucket(nowMs: number, everyMs: number): number {
  return Math.floor(nowMs / everyMs);
}

/** A change reached the key's result. A count trigger may fire; a time trigger only counts it. */
export function triggerOnChange(trigger: GlobalTrigger, state: TriggerState): TriggerStep {
  const pending = state.pending + 1;
  if (trigger.kind === 'count' && pending >= trigger.every) return { state: { ...state, pending: 0 }, fire: true };
  return { state: { ...state, pending }, fire: false };
}

/** The trigger's clock moved to `nowMs`. A time trigger fires once per new interval with changes pending. */
export function triggerOnTime(trigger: GlobalTrigger, state: TriggerState, nowMs: number): TriggerStep {
  if (trigger.kind !== 'time' || state.pending === 0) return { state, fire: false };
  const current = bucket(nowMs, trigger.everyMs);
  if (state.lastFireBucket !== null && current <= state.lastFireBucket) return { state, fire: false };
  return { state: { pending: 0, lastFireBucket: current }, fire: true };
}
