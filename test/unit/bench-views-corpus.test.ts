import { describe, expect, it } from 'vitest';
import { createViewsGenerator, expectViews, serializeViews, viewsMessages } from '../../bench/views-corpus.ts';

interface Envelope {
  readonly op: string;
  readonly after: Record<string, unknown> | null;
  readonly source: { readonly ts_ms: number; readonly table: string };
}

const payloadOf = (value: string): Envelope => {
  const parsed = JSON.parse(value) as Envelope | { payload: Envelope };
  return 'payload' in parsed ? parsed.payload : parsed;
};

describe('views benchmark corpus', () => {
  const spec = { seed: 42, events: 5_000, partitions: 12 };

  it('expects the live rows a replay of its records leaves', () => {
    const next = viewsMessages(spec.seed, spec.partitions);
    const rows = new Map<number, Record<string, unknown>>();
    let previous: string | null = 'start';
    for (let i = 0; i < spec.events; i++) {
      const m = next();
      const key = JSON.parse(m.key) as { id: number } | { payload: { id: number } };
      const id = 'payload' in key ? key.payload.id : key.id;
      if (m.value === null) {
        expect(previous).toBe('d');
        previous = null;
        continue;
      }
      const e = payloadOf(m.value);
      expect(e.source.table).toBe('orders');
      if (e.op === 'd') rows.delete(id);
      else {
        expect(e.op === 'c').toBe(!rows.has(id));
        rows.set(id, e.after!);
      }
      previous = e.op;
    }
    expect(rows.size).toBe(expectViews(spec).liveRows);
    expect(rows.size).toBeGreaterThan(spec.events / 3);
  });

  it('draws group columns from 1k, 100k and 1M values and moves some rows between groups', () => {
    const gen = createViewsGenerator(spec.seed, spec.partitions);
    const groups = new Map<number, number>();
    let moves = 0;
    for (let i = 0; i < spec.events; i++) {
      const r = gen.next();
      const value = serializeViews(spec.seed, r).value;
      if (value === null || r.kind === 'd') continue;
      const row = payloadOf(value).after!;
      expect(row['g1k']).toBeGreaterThanOrEqual(0);
      expect(row['g1k']).toBeLessThan(1_000);
      expect(row['g100k']).toBeLessThan(100_000);
      expect(row['g1m']).toBeLessThan(1_000_000);
      const before = groups.get(r.id);
      if (before !== undefined && before !== row['g1m']) moves++;
      groups.set(r.id, row['g1m'] as number);
    }
    expect(moves).toBeGreaterThan(0);
  });

  it('advances the commit time 1 ms per change and is the same on every run', () => {
    const a = viewsMessages(spec.seed, spec.partitions);
    const b = viewsMessages(spec.seed, spec.partitions);
    let lastTs = 0;
    for (let i = 0; i < 500; i++) {
      const x = a();
      expect(b()).toEqual(x);
      if (x.value === null) continue;
      const ts = payloadOf(x.value).source.ts_ms;
      expect(ts).toBeGreaterThan(lastTs);
      lastTs = ts;
    }
  });
});
