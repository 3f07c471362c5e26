import { describe, expect, it } from 'vitest';
import { expiresAt, KeyedState, type ListState, type MapState, type ValueState } from '../../src/view/keyed-state.ts';
import type { JsonValue } from '../../src/view/core/aggregation.ts';

const DECLS = { seen: 'value', pages: 'list', totals: 'map' } as const;
const TTL = { afterMs: 1_000, clock: 'event_time' } as const;

function handles(state: KeyedState, now: () => number) {
  const h = state.handles(now);
  return { seen: h['seen'] as ValueState<JsonValue>, pages: h['pages'] as ListState<JsonValue>, totals: h['totals'] as MapState<JsonValue> };
}

describe('keyed state with a time to live', () => {
  it('value, list and map entries expire ttl after their last write, each on its own', () => {
    let now = 10_000;
    const state = new KeyedState(DECLS, TTL, {});
    const h = handles(state, () => now);
    h.seen.set(1);
    h.pages.add('a');
    h.totals.set('x', 5);
    now = 10_600;
    h.pages.add('b');
    h.totals.set('y', 7);
    expect([h.seen.get(), h.pages.get(), h.totals.entries()]).toEqual([1, ['a', 'b'], [['x', 5], ['y', 7]]]);
    // 10_000 + 1_000: the first writes are gone, exactly at their expiry; the later ones are not.
    now = 11_000;
    expect([h.seen.get(), h.pages.get(), h.totals.entries(), h.totals.has('x'), h.totals.keys()]).toEqual([undefined, ['b'], [['y', 7]], false, ['y']]);
    // A write starts the entry's time again.
    h.totals.set('y', 8);
    now = 11_700;
    expect([h.pages.get(), h.totals.get('y')]).toEqual([[], 8]);
  });

  it('the stored form keeps only live entries; expiresAt is when its last entry goes', () => {
    let now = 0;
    const state = new KeyedState(DECLS, TTL, {});
    const h = handles(state, () => now);
    h.seen.set({ visits: 2 });
    now = 500;
    h.pages.set(['p', 'q']);
    const stored = state.toStored(now);
    expect(stored).toEqual({ value: { seen: { v: { visits: 2 }, e: 1_000 } }, list: { pages: [{ v: 'p', e: 1_500 }, { v: 'q', e: 1_500 }] } });
    expect(expiresAt(stored)).toBe(1_500);
    expect(state.toStored(1_000)).toEqual({ list: { pages: [{ v: 'p', e: 1_500 }, { v: 'q', e: 1_500 }] } });
    expect(state.toStored(1_500)).toEqual({});
    expect(expiresAt({})).toBeUndefined();
    // Read back from storage, it is the same state.
    const again = handles(new KeyedState(DECLS, TTL, JSON.parse(JSON.stringify(stored))), () => 1_200);
    expect([again.seen.get(), again.pages.get()]).toEqual([undefined, ['p', 'q']]);
  });

  it('without a ttl nothing expires; clear and delete remove', () => {
    const state = new KeyedState(DECLS, undefined, {});
    const h = handles(state, () => 0);
    h.seen.set('s');
    h.totals.set('a', 1);
    h.totals.set('b', 2);
    h.totals.delete('a');
    expect(expiresAt(state.toStored(Number.MAX_SAFE_INTEGER))).toBeNull();
    expect(h.totals.entries()).toEqual([['b', 2]]);
    h.seen.clear();
    h.totals.clear();
    h.pages.add(1);
    h.pages.clear();
    expect(state.toStored(0)).toEqual({});
  });

  it('a value JSON cannot hold is refused when written, naming the state', () => {
    const h = handles(new KeyedState(DECLS, undefined, {}), () => 0);
    expect(() => h.seen.set(Number.NaN)).toThrow('state seen: NaN is not a JSON value');
    expect(() => h.pages.add({ when: new Date(0) } as unknown as JsonValue)).toThrow(/^state pages: /);
  });
});
