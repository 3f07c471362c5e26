import { describe, expect, it } from 'vitest';
import { PartitionTracker } from '../../src/commit/offset-tracker.ts';

describe('PartitionTracker', () => {
  it('commits only the finished prefix, whatever order acks arrive in', () => {
    const t = new PartitionTracker();
    for (const o of [10n, 11n, 12n, 13n]) t.track(o, 2);
    expect(t.commitPoint()).toBeUndefined();
    t.ack(12n);
    t.ack(12n);
    t.ack(11n);
    t.ack(11n);
    expect(t.commitPoint()).toBeUndefined(); // 10 still open
    t.ack(10n);
    expect(t.commitPoint()).toBeUndefined(); // one of two sinks only
    t.ack(10n);
    expect(t.commitPoint()).toBe(13n); // 10..12 finished, 13 open
    t.ack(13n);
    t.ack(13n);
    expect(t.commitPoint()).toBe(14n);
    expect(t.pending).toBe(0);
  });

  it('handles offset gaps (compaction, transaction markers) and records needing no ack', () => {
    const t = new PartitionTracker();
    t.track(5n, 0);
    t.track(9n, 1);
    t.track(20n, 0);
    expect(t.commitPoint()).toBe(9n);
    t.ack(9n);
    expect(t.commitPoint()).toBe(21n);
  });

  it('finish() ends a record whatever acks are missing; extra acks are ignored', () => {
    const t = new PartitionTracker();
    t.track(1n, 3);
    t.track(2n, 1);
    t.finish(1n);
    expect(t.ack(1n)).toBe(false);
    expect(t.commitPoint()).toBe(2n);
    expect(t.firstUnfinished()).toBe(2n);
  });

  it('refuses offsets out of order', () => {
    const t = new PartitionTracker();
    t.track(3n, 1);
    expect(() => t.track(3n, 1)).toThrow(RangeError);
  });
});
