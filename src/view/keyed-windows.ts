import type pg from 'pg';
import type { CdcError } from '../errors.ts';
import type { Row } from '../model/change-event.ts';
import { jsonWithBigints } from '../model/serialize.ts';
import type { JsonValue } from './core/aggregation.ts';
import { lateChangeError, ViewLateError } from './core/late.ts';
import { mergeSession } from './core/sessions.ts';
import { slidingWindowsOnAdd } from './core/sliding.ts';
import { isLate, windowClosed, type TimeWindow, type WindowSpec } from './core/windows.ts';
import type { StateStore, StoredEvent } from './state-store.ts';
import type { Contribution, ViewPlan } from './view-plan.ts';
import { workingGroup, type Delta, type WorkingGroup } from './working-group.ts';

/*
 * Session and sliding windows of a stream: a change's windows depend on the key's other changes,
 * so they are assigned here from the key's stored windows (and, for sliding windows, its stored
 * changes), under a lock per key. The result of a batch does not depend on the order of its
 * changes (sessions and sliding windows are functions of the set of times), so each key's changes
 * are applied in time order.
 */

interface KeyedChange {
  readonly index: number;
  readonly c: Contribution;
  readonly t: number;
}

interface Window {
  readonly gid: string;
  window: TimeWindow;
  readonly g: WorkingGroup;
}

type Failures = Map<number, CdcError>;

function byKey(deltas: readonly Delta[]): Map<string, KeyedChange[]> {
  const out = new Map<string, KeyedChange[]>();
  for (const d of deltas) {
    for (const c of d.plus) {
      const list = out.get(c.groupId) ?? [];
      list.push({ index: d.index, c, t: c.eventMs ?? 0 });
      out.set(c.groupId, list);
    }
  }
  for (const list of out.values()) list.sort((a, b) => a.t - b.t);
  return out;
}

function windowGroupId(c: Contribution, w: TimeWindow): string {
  return jsonWithBigints([...Object.values(c.groupKey), w.start, w.end]);
}

function keyOf(c: Contribution, w: TimeWindow): Row {
  return { ...c.groupKey, window_start: w.start, window_end: w.end };
}

function emptyState(plan: ViewPlan): Record<string, JsonValue> {
  return Object.fromEntries(plan.aggregations.map((a) => [a.name, a.aggregator.init()]));
}

function addValues(plan: ViewPlan, state: Record<string, JsonValue>, values: readonly unknown[]): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  plan.aggregations.forEach((a, i) => (out[a.name] = a.aggregator.add(state[a.name] ?? a.aggregator.init(), values[i])));
  return out;
}

function mergeStates(plan: ViewPlan, a: Record<string, JsonValue>, b: Record<string, JsonValue>): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const agg of plan.aggregations) {
    // planView refuses session windows over an aggregation without merge.
    out[agg.name] = agg.aggregator.merge!(a[agg.name] ?? agg.aggregator.init(), b[agg.name] ?? agg.aggregator.init());
  }
  return out;
}

/** The working group of a window: the batch's own, else the stored one, else a new one. */
function groupFor(groups: Map<string, WorkingGroup>, gid: string): WorkingGroup {
  let g = groups.get(gid);
  if (!g) {
    g = workingGroup(null);
    groups.set(gid, g);
  }
  return g;
}

function place(g: WorkingGroup, plan: ViewPlan, c: Contribution, w: TimeWindow, rows: number, state: Record<string, JsonValue>): void {
  g.key = keyOf(c, w);
  g.rows = rows;
  g.state = state;
  g.touched = true;
  g.changes++;
  g.kid = c.groupId;
  g.windowStart = w.start;
}

function late(plan: ViewPlan, spec: WindowSpec, ch: KeyedChange, watermarkMs: number, window: TimeWindow): CdcError {
  const error = lateChangeError(ch.t, spec, watermarkMs, plan.time.graceMs, window);
  return new ViewLateError(`view ${plan.name}, group ${JSON.stringify(ch.c.groupKey)}: ${error.message}`, error.eventMs, watermarkMs, window);
}

function applySessions(
  plan: ViewPlan,
  gapMs: number,
  changes: readonly KeyedChange[],
  stored: Window[],
  groups: Map<string, WorkingGroup>,
  failures: Failures,
  watermarkMs: number | null,
): number {
  const spec = plan.window!;
  const sessions = [...stored];
  let applied = 0;
  for (const ch of changes) {
    const merge = mergeSession(
      sessions.map((s) => s.window),
      ch.t,
      gapMs,
    );
    if (watermarkMs !== null && windowClosed(merge.session, watermarkMs, plan.time.graceMs, 'session')) {
      failures.set(ch.index, late(plan, spec, ch, watermarkMs, merge.session));
      continue;
    }
    const absorbed = sessions.filter((s) => merge.absorbed.some((w) => w.start === s.window.start && w.end === s.window.end));
    let state = emptyState(plan);
    let rows = 0;
    for (const a of absorbed) {
      state = mergeStates(plan, state, a.g.state);
      rows += a.g.rows;
    }
    const gid = windowGroupId(ch.c, merge.session);
    // A merged-away session's result is deleted: its group empties (an unsaved one of this batch just vanishes).
    for (const a of absorbed) {
      if (a.gid === gid) continue;
      a.g.rows = 0;
      a.g.state = {};
      a.g.touched = true;
    }
    const g = groupFor(groups, gid);
    place(g, plan, ch.c, merge.session, rows + 1, addValues(plan, state, ch.c.values));
    for (const a of absorbed) sessions.splice(sessions.indexOf(a), 1);
    sessions.push({ gid, window: merge.session, g });
    applied++;
  }
  return applied;
}

function between(events: readonly StoredEvent[], w: TimeWindow): StoredEvent[] {
  return events.filter((e) => e.t >= w.start && e.t <= w.end);
}

function applySliding(
  plan: ViewPlan,
  differenceMs: number,
  changes: readonly KeyedChange[],
  stored: Window[],
  events: StoredEvent[],
  groups: Map<string, WorkingGroup>,
  failures: Failures,
  watermarkMs: number | null,
): StoredEvent[] {
  const spec = plan.window!;
  const grace = plan.time.graceMs;
  const byStart = new Map(stored.map((w) => [w.window.start, w]));
  const added: StoredEvent[] = [];
  for (const ch of changes) {
    if (isLate(ch.t, watermarkMs, grace, spec)) {
      failures.set(ch.index, late(plan, spec, ch, watermarkMs!, { start: ch.t + 1, end: ch.t + 1 + differenceMs }));
      continue;
    }
    const times = events.map((e) => e.t);
    const event = { t: ch.t, values: ch.c.values };
    for (const change of slidingWindowsOnAdd(times, ch.t, differenceMs)) {
      // A closed window takes nothing more (Kafka Streams skips it the same way).
      if (windowClosed(change.window, watermarkMs, grace, 'sliding')) continue;
      const known = byStart.get(change.window.start);
      const gid = windowGroupId(ch.c, change.window);
      const g = known?.g ?? groupFor(groups, gid);
      if (known && !change.created) {
        place(g, plan, ch.c, change.window, g.rows + 1, addValues(plan, g.state, ch.c.values));
      } else {
        // A window new to the key (or not loaded): its state is the fold of the changes inside it.
        // Its own right window [t + 1, t + 1 + d] (created by a later change) does not hold the change itself.
        const members = [...between(events, change.window), ...between([event], change.window)];
        const state = members.reduce((s, e) => addValues(plan, s, e.values), emptyState(plan));
        place(g, plan, ch.c, change.window, members.length, state);
        byStart.set(change.window.start, { gid, window: change.window, g });
      }
    }
    const at = events.findIndex((e) => e.t > ch.t);
    events.splice(at === -1 ? events.length : at, 0, event);
    added.push(event);
  }
  return added;
}

/**
 * Applies a stream batch's changes to session or sliding windows: locks the keys, loads the
 * windows (and changes) the batch's times can reach, assigns and merges in memory, and leaves the
 * changed groups in `groups` (merged-away sessions with no rows, so their results are deleted).
 * Returns the number of changes applied; late ones are in `failures`.
 */
export async function applyKeyedWindows(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  deltas: readonly Delta[],
  groups: Map<string, WorkingGroup>,
  failures: Failures,
  watermarkMs: number | null,
): Promise<number> {
  const spec = plan.window;
  if (!spec || (spec.kind !== 'session' && spec.kind !== 'sliding')) throw new RangeError(`view ${plan.name}: not a session or sliding window`);
  const keys = byKey(deltas);
  if (keys.size === 0) return 0;
  const reach = spec.kind === 'session' ? spec.gapMs : spec.differenceMs + 1;
  const ranges = [...keys].map(([kid, list]) => ({ kid, from: list[0]!.t - reach, to: list.at(-1)!.t + reach }));
  await store.lockKeys(
    client,
    plan.name,
    ranges.map((r) => r.kid),
  );
  const windows = new Map<string, Window[]>();
  for (const w of await store.lockWindowsOf(client, plan.name, ranges)) {
    const kid = w.kid;
    const existing = groups.get(w.gid);
    const g = existing ?? workingGroup(w);
    if (!existing) groups.set(w.gid, g);
    g.kid = kid;
    g.windowStart = w.start;
    windows.set(kid, [...(windows.get(kid) ?? []), { gid: w.gid, window: { start: w.start, end: w.end }, g }]);
  }
  const events = spec.kind === 'sliding' ? await store.events(client, plan.name, ranges) : new Map<string, StoredEvent[]>();
  let applied = 0;
  const added: { kid: string; t: number; values: readonly unknown[] }[] = [];
  for (const [kid, list] of keys) {
    const stored = windows.get(kid) ?? [];
    if (spec.kind === 'session') {
      applied += applySessions(plan, spec.gapMs, list, stored, groups, failures, watermarkMs);
    } else {
      const fresh = applySliding(plan, spec.differenceMs, list, stored, events.get(kid) ?? [], groups, failures, watermarkMs);
      applied += fresh.length;
      for (const e of fresh) added.push({ kid, ...e });
    }
  }
  // New windows need their rows (placeholders) before they are saved; the key locks keep others away from them.
  const fresh = [...groups].filter(([, g]) => !g.existed && g.rows > 0).map(([gid]) => gid);
  await store.lockGroups(client, plan.name, fresh);
  await store.addEvents(client, plan.name, added);
  if (spec.kind === 'sliding' && watermarkMs !== null && Number.isFinite(plan.time.graceMs)) {
    await store.pruneEvents(client, plan.name, watermarkMs - plan.time.graceMs - spec.differenceMs - 1);
  }
  return applied;
}
