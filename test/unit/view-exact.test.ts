import { describe, expect, it } from 'vitest';
import { ViewInputError } from '../../src/view/core/errors.ts';
import {
  add,
  compare,
  decimalFromNumber,
  deserializeDecimal,
  divide,
  isZero,
  mul,
  parseDecimal,
  postgresDivisionScale,
  serializeDecimal,
  sqrt,
  sub,
  toDecimal,
  toDecimalString,
  toNumber,
} from '../../src/view/core/exact.ts';
import { seededRandom as seeded } from '../support/random.ts';

const d = (text: string) => deserializeDecimal(text);
const s = toDecimalString;

describe('exact decimals', () => {
  it('parses decoder decimal text, keeping its scale', () => {
    expect(parseDecimal('-12.340')).toEqual({ m: -12340n, s: 3 });
    expect(parseDecimal('0')).toEqual({ m: 0n, s: 0 });
    expect(parseDecimal('123456789012345678901234567890.5')).toEqual({ m: 1234567890123456789012345678905n, s: 1 });
    expect(s(d('-0.001'))).toBe('-0.001');
  });

  it('parses every form of decimal text alike, on the plain-text fast path and off it', () => {
    const forms: [string, { m: bigint; s: number } | undefined][] = [
      ['-0.50', { m: -50n, s: 2 }],
      ['.5', { m: 5n, s: 1 }],
      ['5.', { m: 5n, s: 0 }],
      ['007', { m: 7n, s: 0 }],
      ['999999999999999', { m: 999999999999999n, s: 0 }],
      ['9999999999999999', { m: 9999999999999999n, s: 0 }],
      ['12345678901234.56', { m: 1234567890123456n, s: 2 }],
      ['+5', { m: 5n, s: 0 }],
      ['1e3', { m: 1000n, s: 0 }],
      ['1.2.3', undefined],
      ['-', undefined],
      ['.', undefined],
      ['', undefined],
      ['1 2', undefined],
      ['--1', undefined],
    ];
    for (const [text, want] of forms) expect(parseDecimal(text), text).toEqual(want);
  });

  it('parses the shortest round-trip text of numbers, exponent forms included', () => {
    expect(decimalFromNumber(1e-7)).toEqual({ m: 1n, s: 7 });
    expect(decimalFromNumber(1.5e21)).toEqual({ m: 1500000000000000000000n, s: 0 });
    expect(decimalFromNumber(-2.5e-8)).toEqual({ m: -25n, s: 9 });
    expect(decimalFromNumber(0.1)).toEqual({ m: 1n, s: 1 });
    expect(decimalFromNumber(-0)).toEqual({ m: 0n, s: 0 });
    expect(s(toDecimal(5e-324, 't'))).toBe(`0.${'0'.repeat(323)}5`);
    expect(parseDecimal('1.25E+2')).toEqual({ m: 125n, s: 0 });
  });

  it('takes int64 beyond 2^53 as a bigint exactly', () => {
    expect(s(toDecimal(9223372036854775807n, 'sum'))).toBe('9223372036854775807');
    expect(s(add(toDecimal(9223372036854775807n, 't'), toDecimal(1n, 't')))).toBe('9223372036854775808');
  });

  it('refuses NaN, infinities, booleans, objects and non-numeric text with a typed error', () => {
    for (const bad of [NaN, Infinity, -Infinity, true, false, {}, [], undefined, 'abc', '', '1.2.3', '0x10', ' 1']) {
      let caught: unknown;
      try {
        toDecimal(bad, 'sum');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ViewInputError);
      const e = caught as ViewInputError;
      expect(e.code).toBe('VIEW_NOT_NUMERIC');
      expect(e.stage).toBe('view');
      expect(e.retriable).toBe(false);
      expect(e.message).toMatch(/^sum needs a number/);
    }
    expect(() => toDecimal(NaN, 'avg')).toThrow(/avg needs .* got a number "NaN"/);
    expect(() => toDecimal({}, 'avg')).toThrow(/got an object/);
    expect(parseDecimal('1e99999')).toBeUndefined();
  });

  it('adds, subtracts and multiplies exactly, keeping the largest scale', () => {
    expect(s(add(d('1.10'), d('2.205')))).toBe('3.305');
    expect(s(add(d('0.1'), d('0.2')))).toBe('0.3');
    expect(s(sub(d('1.10'), d('1.1')))).toBe('0.00');
    expect(s(mul(d('-1.5'), d('2.25')))).toBe('-3.375');
    expect(isZero(sub(d('1.10'), d('1.1')))).toBe(true);
    expect(compare(d('1.10'), d('1.1'))).toBe(0);
    expect(compare(d('-1'), d('0.5'))).toBe(-1);
    expect(compare(d('10'), d('9.999'))).toBe(1);
    expect(toNumber(d('0.30'))).toBe(0.3);
  });

  it('serializes to text and back without loss, random values', () => {
    const r = seeded(7);
    for (let i = 0; i < 2000; i++) {
      const digits = Array.from({ length: r.int(1, 40) }, () => r.int(0, 9)).join('');
      const scale = r.int(0, 20);
      const v = { m: (r.next() < 0.5 ? -1n : 1n) * BigInt(digits), s: scale };
      const back = deserializeDecimal(serializeDecimal(v));
      expect(back).toEqual(v.m === 0n ? { m: 0n, s: scale } : v);
      expect(JSON.parse(JSON.stringify(serializeDecimal(v)))).toBe(serializeDecimal(v));
    }
  });

  it('divides and takes square roots rounding half away from zero / half up', () => {
    expect(s(divide(d('2'), d('3'), 4))).toBe('0.6667');
    expect(s(divide(d('-2'), d('3'), 4))).toBe('-0.6667');
    expect(s(divide(d('1'), d('8'), 2))).toBe('0.13');
    expect(s(divide(d('-1'), d('8'), 2))).toBe('-0.13');
    expect(s(sqrt(d('2'), 10))).toBe('1.4142135624');
    expect(s(sqrt(d('0.25'), 3))).toBe('0.500');
    expect(s(sqrt(d('1522756'), 0))).toBe('1234');
    expect(() => sqrt(d('-1'), 2)).toThrow(RangeError);
  });

  it('divides numeric like PostgreSQL (scale and rounding as printed by psql)', () => {
    // Expected texts are what PostgreSQL 15 printed for numeric division.
    const cases: [string, string, string][] = [
      ['10000', '2', '5000.0000000000000000'],
      ['1.5', '1000000', '0.000001500000000000000000'],
      ['3', '2', '1.5000000000000000'],
      ['6', '9', '0.66666666666666666667'],
      ['99999', '3', '33333.000000000000'],
      ['0.00012', '7', '0.000017142857142857142857'],
    ];
    for (const [a, b, printed] of cases) {
      expect(s(divide(d(a), d(b), postgresDivisionScale(d(a), d(b))))).toBe(printed);
    }
  });
});

describe('square roots of large values', () => {
  it('are exact floors rounded half up, far beyond double precision (random)', () => {
    const r = seeded(13);
    for (let i = 0; i < 300; i++) {
      const digits = Array.from({ length: r.int(1, 400) }, () => r.int(0, 9)).join('');
      const v = { m: BigInt(digits), s: r.int(0, 30) };
      const scale = r.int(0, 40);
      const got = sqrt(v, scale);
      // (got - 1/2)^2 <= v < (got + 1/2)^2, all at scale 2·scale + 2 on integers.
      const lhs = (2n * got.m - 1n) ** 2n * 10n ** BigInt(v.s);
      const rhs = (2n * got.m + 1n) ** 2n * 10n ** BigInt(v.s);
      const target = 4n * v.m * 10n ** BigInt(2 * scale);
      expect(lhs <= target || got.m === 0n).toBe(true);
      expect(target < rhs).toBe(true);
    }
  });
});
