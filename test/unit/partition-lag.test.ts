import { describe, expect, it } from 'vitest';
import { partitionLag, totalLag } from '../../src/metrics/partition-lag.ts';

describe('partition lag: one rule for /status, the gauge and offsets show', () => {
  const offsets = { low: 100n, end: 150n };

  it('counts from the committed offset, or from the log start when retention passed it', () => {
    expect(partitionLag(offsets, 120n, false)).toBe(30n);
    expect(partitionLag(offsets, 20n, false)).toBe(50n);
    expect(partitionLag(offsets, 150n, true)).toBe(0n);
    expect(partitionLag(offsets, 160n, true)).toBe(0n);
  });

  it('counts a never-committed partition from its first retained offset only when from_beginning', () => {
    expect(partitionLag(offsets, undefined, true)).toBe(50n);
    expect(partitionLag(offsets, undefined, false)).toBeUndefined();
  });

  it('sums only when every lag is known', () => {
    expect(totalLag([1n, 2n, 0n])).toBe(3n);
    expect(totalLag([1n, undefined])).toBeUndefined();
    expect(totalLag([])).toBeUndefined();
  });
});
