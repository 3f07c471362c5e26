import type { Row } from '../model/change-event.ts';
import type { JsonValue } from './core/aggregation.ts';
import type { TriggerState } from './core/trigger.ts';
import type { StoredGroup } from './state-store.ts';
import type { Contribution } from './view-plan.ts';

/** A group (one result row) as a batch changes it, before it is saved and its result emitted. */
export interface WorkingGroup {
  key: Row;
  rows: number;
  state: Record<string, JsonValue>;
  readonly existed: boolean;
  touched: boolean;
  /** emit: final: its result has been written. A global window: it has been emitted. */
  fired: boolean;
  /** Input changes that reached it in this batch (a global window's count trigger counts them). */
  changes: number;
  trigger: TriggerState | null;
  /** Session and sliding windows: the key without the window, and the window's start. */
  kid?: string | undefined;
  windowStart?: number | undefined;
}

export function workingGroup(stored: StoredGroup | null): WorkingGroup {
  return stored
    ? // The state record is the batch's own (a cached group's is shared); aggregation states are replaced, never changed.
      { key: stored.key, rows: stored.rows, state: { ...stored.state }, existed: true, touched: false, fired: stored.fired, changes: 0, trigger: stored.trigger }
    : { key: {}, rows: 0, state: {}, existed: false, touched: false, fired: false, changes: 0, trigger: null };
}

/** One input change turned into what it does to the view: contributions retracted and added. */
export interface Delta {
  readonly index: number;
  readonly minus: readonly Contribution[];
  readonly plus: readonly Contribution[];
}
