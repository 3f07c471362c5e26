import { describe, expect, it } from 'vitest';
import { coalesce, expandResults, keyString, type Segment } from '../../src/sink/coalesce.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import { makeEvent, UNAVAILABLE } from '../support/events.ts';

const ev = (op: 'c' | 'u' | 'd' | 't', id: number | null, lsn: number, after: Record<string, unknown> | null = null) =>
  makeEvent({ op, schema: 's', table: 't', key: id === null ? null : { id }, after, lsn });

describe('coalesce', () => {
  it('keeps the last change per key by position; delete after insert ends as delete', () => {
    const segs = coalesce([ev('c', 1, 10, { v: 1 }), ev('u', 2, 11, { v: 2 }), ev('d', 1, 12), ev('u', 2, 9, { v: 0 })]);
    expect(segs).toHaveLength(1);
    const seg = segs[0]!;
    if (seg.kind !== 'changes') throw new Error('expected changes');
    expect(seg.events.map((e) => [e.op, e.key])).toEqual([
      ['d', { id: 1 }],
      ['u', { id: 2 }],
    ]);
    expect(seg.events[1]!.after).toEqual({ v: 2 }); // the older lsn 9 lost, though it came later
    expect(seg.members).toEqual([[0, 2], [1, 3]]);
  });

  it('splits at truncates and maps results back to every record', () => {
    const batch = [ev('c', 1, 1, { v: 1 }), ev('t', null, 2), ev('c', 1, 3, { v: 3 }), ev('u', 1, 4, { v: 4 })];
    const segs = coalesce(batch);
    expect(segs.map((s) => s.kind)).toEqual(['changes', 'truncate', 'changes']);
    const bad: SinkResult = { ok: false, error: new (class extends Error {})('x') as never };
    const results = new Map<Segment, SinkResult[]>([
      [segs[0]!, [OK]],
      [segs[1]!, [OK]],
      [segs[2]!, [bad]],
    ]);
    expect(expandResults(4, segs, results)).toEqual([OK, OK, bad, bad]);
  });

  it('carries values forward over the unavailable-TOAST marker', () => {
    const segs = coalesce([ev('u', 1, 1, { id: 1, body: 'full', t: 'a' }), ev('u', 1, 2, { id: 1, body: UNAVAILABLE, t: 'b' })]);
    const seg = segs[0]!;
    if (seg.kind !== 'changes') throw new Error('expected changes');
    expect(seg.events[0]!.after).toEqual({ id: 1, body: 'full', t: 'b' });
  });

  it('builds stable key strings', () => {
    expect(keyString({ a: 1, b: 'x' })).toBe('[1,"x"]');
    expect(keyString(null)).toBe('');
  });
});
