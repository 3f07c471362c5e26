import { isUnavailable, type ChangeEvent, type Row } from '../model/change-event.ts';
import { comparePositions } from '../model/position.ts';
import { jsonWithBigints } from '../model/serialize.ts';
import type { SinkResult } from './sink.ts';

/** Key objects are shared by every sink of a route: each is stringified once. */
const keyStrings = new WeakMap<Readonly<Row>, string>();

/** A stable string for a row key: key column values in key order, as JSON. */
export function keyString(key: Readonly<Row> | null): string {
  if (!key) return '';
  let s = keyStrings.get(key);
  if (s === undefined) keyStrings.set(key, (s = jsonWithBigints(Object.values(key))));
  return s;
}

export type Segment =
  | { readonly kind: 'changes'; readonly events: readonly ChangeEvent[]; readonly members: readonly (readonly number[])[] }
  | { readonly kind: 'truncate'; readonly event: ChangeEvent; readonly index: number };

/**
 * Splits a sink batch at truncates (nothing may move across one) and, between them, keeps one event
 * per (table, key): the one with the highest position, so each key is written once. A delete after an
 * insert ends as the delete. When the kept event has unavailable (unchanged TOAST) columns that an
 * earlier event of the same key carried, those values are carried forward: dropping the earlier event
 * must not lose them.
 *
 * `members[i]` lists the batch indices that event i stands for, so results map back per record.
 */
export function coalesce(batch: readonly ChangeEvent[]): Segment[] {
  const segments: Segment[] = [];
  let byKey = new Map<string, { event: ChangeEvent; members: number[] }>();
  const flush = () => {
    if (byKey.size === 0) return;
    const groups = [...byKey.values()];
    segments.push({ kind: 'changes', events: groups.map((g) => g.event), members: groups.map((g) => g.members) });
    byKey = new Map();
  };
  batch.forEach((event, index) => {
    if (event.op === 't') {
      flush();
      segments.push({ kind: 'truncate', event, index });
      return;
    }
    const id = `${event.table.id}\u0000${keyString(event.key)}`;
    const prev = byKey.get(id);
    if (!prev) {
      byKey.set(id, { event, members: [index] });
      return;
    }
    prev.members.push(index);
    const newer = comparePositions(event.position, prev.event.position) >= 0;
    const [older, winner] = newer ? [prev.event, event] : [event, prev.event];
    prev.event = carryUnavailable(winner, older);
  });
  flush();
  return segments;
}

function carryUnavailable(winner: ChangeEvent, older: ChangeEvent): ChangeEvent {
  const after = winner.after;
  if (!after || !older.after || winner.op === 'd') return winner;
  let patched: Row | undefined;
  for (const [col, v] of Object.entries(after)) {
    if (!isUnavailable(v)) continue;
    const earlier = older.after[col];
    if (earlier !== undefined && !isUnavailable(earlier)) (patched ??= { ...after })[col] = earlier;
  }
  return patched ? { ...winner, after: patched } : winner;
}

/** Spreads per-event results of coalesced segments back over the original batch. */
export function expandResults(size: number, segments: readonly Segment[], results: ReadonlyMap<Segment, readonly SinkResult[]>): SinkResult[] {
  const out = new Array<SinkResult>(size);
  for (const seg of segments) {
    const r = results.get(seg);
    if (!r) continue;
    if (seg.kind === 'truncate') out[seg.index] = r[0]!;
    else seg.members.forEach((idxs, i) => idxs.forEach((idx) => (out[idx] = r[i]!)));
  }
  return out;
}
