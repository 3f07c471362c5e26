import { describe, expect, it } from 'vitest';
import { MICROS, MILLIS, NANOS, formatDate, formatTimestamp, formatTimestampBig } from '../../src/decode/temporal.ts';
import { ViewInputError } from '../../src/view/core/errors.ts';
import { daysFromCivil, eventTimeMs, requireEventTimeMs } from '../../src/view/core/event-time.ts';
import { seededRandom as seeded } from '../support/random.ts';

describe('event times from decoded values', () => {
  it('reads dates as midnight UTC, expanded years included', () => {
    expect(eventTimeMs('1970-01-01')).toBe(0);
    expect(eventTimeMs('2026-12-02')).toBe(Date.UTC(2026, 11, 2));
    expect(eventTimeMs('1969-12-31')).toBe(-86_400_000);
    expect(eventTimeMs('2000-02-29')).toBe(Date.UTC(2000, 1, 29));
    expect(eventTimeMs('+010000-01-01')).toBe(Date.parse('+010000-01-01T00:00:00Z'));
    expect(eventTimeMs('-000001-12-31')).toBe(Date.parse('-000001-12-31T00:00:00Z'));
  });

  it('reads timestamps with milli, micro and nano fractions, flooring to the millisecond', () => {
    expect(eventTimeMs('2026-12-02T04:29:59.999')).toBe(1796185799999);
    expect(eventTimeMs('2026-12-02T04:29:59.999999')).toBe(1796185799999);
    expect(eventTimeMs('2026-12-02T04:29:59.999999999')).toBe(1796185799999);
    expect(eventTimeMs('1969-12-31T23:59:59.999999')).toBe(-1);
    expect(eventTimeMs('1969-12-31T23:59:59.000001')).toBe(-1000);
    expect(eventTimeMs('1900-03-04T05:06:07.008')).toBe(-2203613632992);
    expect(eventTimeMs('2026-12-02 04:29:59')).toBe(1796185799000);
  });

  it('reads zoned timestamps with Z or an offset', () => {
    expect(eventTimeMs('2026-12-02T04:29:59.123456Z')).toBe(1796185799123);
    expect(eventTimeMs('2026-12-02T06:29:59+02:00')).toBe(1796185799000);
    expect(eventTimeMs('2026-12-01T23:59:59.5-04:30')).toBe(Date.parse('2026-12-02T04:29:59.500Z'));
    expect(eventTimeMs('2026-12-02T05:29:59+0100')).toBe(1796185799000);
    expect(eventTimeMs('2026-12-02T05:29:59+01')).toBe(1796185799000);
    expect(eventTimeMs('2026-12-02T04:30Z')).toBe(1796185800000);
  });

  it('agrees with the decoder: every value it formats reads back to the floored millisecond (random)', () => {
    const r = seeded(42);
    for (let i = 0; i < 3000; i++) {
      const ms = r.int(-8e15, 8e15);
      expect(eventTimeMs(formatTimestamp(ms, MILLIS))).toBe(ms);
      const micros = BigInt(ms) * 1000n + BigInt(r.int(0, 999));
      expect(eventTimeMs(formatTimestampBig(micros, MICROS))).toBe(ms);
      const nanos = BigInt(ms) * 1_000_000n + BigInt(r.int(0, 999_999));
      expect(eventTimeMs(formatTimestampBig(nanos, NANOS))).toBe(ms);
      const days = r.int(-1e8, 1e8);
      expect(eventTimeMs(formatDate(days))).toBe(days * 86_400_000);
      const [y, m, d] = /^([+-]?\d+)-(\d+)-(\d+)$/.exec(formatDate(days))!.slice(1).map(Number) as [number, number, number];
      expect(daysFromCivil(y, m, d)).toBe(days);
    }
  });

  it('reads epoch numbers and bigints as milliseconds, or in the unit given', () => {
    expect(eventTimeMs(1796185799999)).toBe(1796185799999);
    expect(eventTimeMs(-1)).toBe(-1);
    expect(eventTimeMs(1.9)).toBe(1);
    expect(eventTimeMs(-0.5)).toBe(-1);
    expect(eventTimeMs(1796185799, 's')).toBe(1796185799000);
    expect(eventTimeMs(1796185799999999, 'us')).toBe(1796185799999);
    expect(eventTimeMs(-1, 'us')).toBe(-1);
    expect(eventTimeMs(1796185799999999999n, 'ns')).toBe(1796185799999);
    expect(eventTimeMs(-1n, 'ns')).toBe(-1);
    expect(eventTimeMs(1796185799999n)).toBe(1796185799999);
    expect(eventTimeMs(new Date(5))).toBe(5);
  });

  it('gives undefined for what is not a time, and a typed error on request', () => {
    for (const bad of [null, undefined, true, {}, 'yesterday', '2026-13-01', '2026-02-30', '2026-12-02T24:00:00', '2026-12-02T04:29:59+19:00', NaN, Infinity, 9223372036854775807n, '12345', new Date(NaN)]) {
      expect(eventTimeMs(bad)).toBeUndefined();
    }
    expect(() => requireEventTimeMs('soon', 'created_at')).toThrow(ViewInputError);
    expect(() => requireEventTimeMs('soon', 'created_at')).toThrow(/event time column created_at needs .* got a string "soon"/);
    expect(() => requireEventTimeMs(null, 'created_at')).toThrow(expect.objectContaining({ code: 'VIEW_NOT_A_TIME', stage: 'view', retriable: false }));
    expect(requireEventTimeMs('1970-01-01T00:00:01Z', 'c')).toBe(1000);
  });
});
