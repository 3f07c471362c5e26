import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AggValue, AggregationKind, Aggregator, JsonValue } from '../../src/view/core/aggregation.ts';
import { AGGREGATIONS, aggregate, createAggregator } from '../../src/view/core/aggregations/index.ts';
import { codePointCompare, compareKeys } from '../../src/view/core/aggregations/value-order.ts';
import { ViewInputError, ViewSpecError } from '../../src/view/core/errors.ts';
import { type Decimal, compare, deserializeDecimal, divide, toDecimal, toDecimalString } from '../../src/view/core/exact.ts';
import { type Random, seededRandom as seeded } from '../support/random.ts';

type Agg = Aggregator<JsonValue>;

/** Folds values into a fresh state, passing every state through JSON as the runtime's store does. */
function fold(agg: Agg, values: readonly unknown[]): JsonValue {
  let state = agg.init();
  for (const v of values) state = viaJson(agg.add(state, v));
  return state;
}

function viaJson(state: JsonValue): JsonValue {
  return JSON.parse(JSON.stringify(state)) as JsonValue;
}

function resultOf(kind: AggregationKind, values: readonly unknown[], options = {}): AggValue {
  const agg = createAggregator(kind, options);
  return agg.result(fold(agg, values));
}

type Gen = (r: Random) => unknown;
const smallInt: Gen = (r) => r.int(-1000, 1000);
const int64: Gen = (r) => (r.next() < 0.5 ? BigInt(r.int(-9, 9)) * 1_000_000_000_000_000_000n + BigInt(r.int(0, 1e9)) : r.int(-1e15, 1e15));
const decimalText: Gen = (r) => {
  const scale = r.int(0, 4);
  const m = BigInt(r.int(-1e9, 1e9));
  return toDecimalString({ m, s: scale });
};
const double: Gen = (r) => (r.next() - 0.5) * 10 ** r.int(-3, 6);
const text: Gen = (r) => r.pick(['a', 'b', 'B', 'ab', 'é', '😀', '10', '9', '', 'zz']);
const withNulls = (g: Gen): Gen => (r) => (r.next() < 0.15 ? null : g(r));

/**
 * Random adds and subtracts of earlier-added values; after each step the state (through JSON)
 * must give the result of a fresh fold over the values still present, and `reference` of them.
 */
function property(
  kind: AggregationKind,
  gen: Gen,
  reference: (values: unknown[]) => AggValue | ((got: AggValue) => void),
  options = {},
  seeds = 8,
  steps = 150,
): void {
  for (let seed = 1; seed <= seeds; seed++) {
    const r = seeded(seed * 7919 + kind.length);
    const agg = createAggregator(kind, options);
    let state = agg.init();
    const present: unknown[] = [];
    for (let step = 0; step < steps; step++) {
      if (present.length > 0 && r.next() < 0.4) {
        const [v] = present.splice(r.int(0, present.length - 1), 1);
        state = viaJson(agg.subtract(state, v));
      } else {
        const v = gen(r);
        present.push(v);
        state = viaJson(agg.add(state, v));
      }
      const got = agg.result(state);
      expect(got, `${kind} seed ${seed} step ${step}`).toEqual(agg.result(fold(agg, present)));
      const want = reference(present);
      if (typeof want === 'function') want(got);
      else expect(got, `${kind} seed ${seed} step ${step} vs reference`).toEqual(want);
    }
  }
}

const nonNull = (values: unknown[]) => values.filter((v) => v !== null);
const dec = (v: unknown): Decimal => toDecimal(v, 'test');
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function bigSum(values: unknown[]): bigint {
  return nonNull(values).reduce<bigint>((acc, v) => acc + BigInt(v as number | bigint), 0n);
}

describe('count', () => {
  it('count(col) counts non-null values, count(*) every row, under retractions', () => {
    property('count', withNulls(smallInt), (vs) => nonNull(vs).length);
    property('count', withNulls(smallInt), (vs) => vs.length, { star: true });
  });
  it('is 0 for an empty group and refuses a missing value for count(col)', () => {
    expect(resultOf('count', [])).toBe(0);
    expect(() => resultOf('count', [undefined])).toThrow(ViewInputError);
    expect(resultOf('count', [undefined, null], { star: true })).toBe(2);
  });
});

describe('sum', () => {
  it('sums integers exactly: a number while safe, a bigint beyond 2^53', () => {
    property('sum', withNulls(int64), (vs) => {
      if (nonNull(vs).length === 0) return null;
      const s = bigSum(vs);
      return s >= -MAX_SAFE && s <= MAX_SAFE ? Number(s) : s;
    });
    expect(resultOf('sum', [Number.MAX_SAFE_INTEGER, 2])).toBe(9007199254740993n);
    expect(resultOf('sum', [9223372036854775807n, 9223372036854775807n])).toBe(18446744073709551614n);
    expect(resultOf('sum', [9223372036854775807n, -9223372036854775807n, 5])).toBe(5);
  });

  it('sums decimal text exactly at the largest scale present', () => {
    property('sum', withNulls(decimalText), (vs) => {
      const present = nonNull(vs);
      if (present.length === 0) return null;
      const scale = Math.max(...present.map((v) => dec(v).s));
      const total = present.reduce<bigint>((acc, v) => acc + dec(v).m * 10n ** BigInt(scale - dec(v).s), 0n);
      return toDecimalString({ m: total, s: scale });
    });
    expect(resultOf('sum', ['0.1', '0.2'])).toBe('0.3');
    expect(resultOf('sum', ['1.10', '2.205'])).toBe('3.305');
    expect(resultOf('sum', ['99999999999999999999999999.99', '0.01'])).toBe('100000000000000000000000000.00');
  });

  it('drops the scale of a retracted value, as a recomputation over the rest would', () => {
    const agg = createAggregator('sum');
    let st = fold(agg, ['1.10', '2.205']);
    st = agg.subtract(st, '2.205');
    expect(agg.result(st)).toBe('1.10');
  });

  it('sums doubles exactly, then rounds once', () => {
    expect(resultOf('sum', [0.1, 0.2])).toBe(0.3);
    expect(resultOf('sum', [1e16, 1, -1e16])).toBe(1);
    property('sum', withNulls(double), (vs) => {
      const present = nonNull(vs);
      if (present.length === 0) return null;
      const exact = present.reduce<Decimal>((acc, v) => {
        const x = dec(v);
        const sc = Math.max(acc.s, x.s);
        return { m: acc.m * 10n ** BigInt(sc - acc.s) + x.m * 10n ** BigInt(sc - x.s), s: sc };
      }, { m: 0n, s: 0 });
      return Number(toDecimalString(exact));
    });
  });

  it('ignores nulls; null for an empty or all-null group', () => {
    expect(resultOf('sum', [])).toBeNull();
    expect(resultOf('sum', [null, null])).toBeNull();
    expect(resultOf('sum', [null, 3])).toBe(3);
  });

  it('refuses values that are not numbers with VIEW_NOT_NUMERIC naming the aggregation and type', () => {
    const agg = createAggregator('sum');
    for (const [bad, type] of [['abc', 'a string'], [true, 'a boolean'], [{ a: 1 }, 'an object'], [NaN, 'a number'], [undefined, 'undefined']] as const) {
      let caught: unknown;
      try {
        agg.add(agg.init(), bad);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ViewInputError);
      expect((caught as ViewInputError).code).toBe('VIEW_NOT_NUMERIC');
      expect((caught as ViewInputError).stage).toBe('view');
      expect((caught as ViewInputError).message).toContain('sum');
      expect((caught as ViewInputError).message).toContain(type);
    }
    expect(() => agg.subtract(agg.init(), 5)).toThrow(/subtract/);
  });
});

function extremeOf(values: unknown[], which: 'min' | 'max', asText = false): AggValue {
  const present = nonNull(values);
  if (present.length === 0) return null;
  const order = (a: unknown, b: unknown): number => {
    if (asText) return (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;
    return compare(dec(a), dec(b));
  };
  const sorted = [...present].sort(order);
  const pickFrom = which === 'min' ? sorted[0] : sorted.at(-1);
  return pickFrom as AggValue;
}

describe('min and max', () => {
  it('fall back to the next value when the extreme is retracted (random, every numeric form)', () => {
    const mixed: Gen = (r) => r.pick([smallInt, int64, decimalText, double])(r);
    for (const which of ['min', 'max'] as const) {
      property(which, withNulls(mixed), (vs) => {
        const want = extremeOf(vs, which);
        return (got: AggValue) => {
          if (want === null) return expect(got).toBeNull();
          expect(compare(dec(got), dec(want))).toBe(0);
        };
      });
      property(which, withNulls(text), (vs) => extremeOf(vs, which, true), { strings: 'text' });
    }
  });

  it('retracting the maximum falls back to the next, duplicates counted', () => {
    const agg = createAggregator('max');
    let st = fold(agg, [5, 9, 9, 7]);
    expect(agg.result(st)).toBe(9);
    st = agg.subtract(st, 9);
    expect(agg.result(st)).toBe(9);
    st = agg.subtract(st, 9);
    expect(agg.result(st)).toBe(7);
    st = agg.subtract(agg.subtract(st, 7), 5);
    expect(agg.result(st)).toBeNull();
  });

  it('compares numbers, int64 and decimal text by value; text by code point (COLLATE "C")', () => {
    expect(resultOf('max', [9007199254740993n, 9007199254740992, '9007199254740992.5'])).toBe(9007199254740993n);
    expect(resultOf('min', ['-0.001', '-0.0009', 0])).toBe('-0.001');
    expect(resultOf('max', ['10', '9'])).toBe('10');
    expect(resultOf('max', ['10', '9'], { strings: 'text' })).toBe('9');
    // Only the decoder's decimal forms count as numbers in 'auto': not '+5', '.5' or '5.'.
    expect(resultOf('max', ['+5', '.5', '5.', '4'])).toBe('5.');
    expect(resultOf('max', ['1e+21', '999999999999999999999'])).toBe('1e+21');
    expect(resultOf('min', ['b', 'B', 'a'])).toBe('B');
    expect(resultOf('max', ['z', 'é', '😀'])).toBe('😀');
    // PostgreSQL: max(x COLLATE "C") over '😀', U+FFFD, 'z' is '😀' (code point order; UTF-16 order would say U+FFFD).
    expect(resultOf('max', ['😀', '\uFFFD', 'z'])).toBe('😀');
    expect(resultOf('min', ['\uFFFD', '😀'], { strings: 'text' })).toBe('\uFFFD');
    expect(resultOf('max', [false, true])).toBe(true);
    expect(resultOf('min', ['2026-01-02T00:00:00.000', '2025-12-31T23:59:59.999'])).toBe('2025-12-31T23:59:59.999');
  });

  it('orders decimal text exactly by value: leading and trailing zeros, signs, zeros of either sign', () => {
    const r = seeded(11);
    const digits = (n: number) => Array.from({ length: n }, () => String(r.int(0, 9))).join('');
    const decimal = () => {
      const int = '0'.repeat(r.int(0, 2)) + digits(r.int(1, 4));
      const frac = r.int(0, 2) === 0 ? '' : `.${digits(r.int(1, 4))}${'0'.repeat(r.int(0, 2))}`;
      return `${r.int(0, 1) === 0 ? '-' : ''}${int}${frac}`;
    };
    for (let i = 0; i < 20_000; i++) {
      const a = decimal();
      const b = r.int(0, 9) === 0 ? a.replace(/^-/, '') : decimal();
      const exact = compare(toDecimal(a, 'a'), toDecimal(b, 'b'));
      const got = Math.sign(compareKeys(`d:${a}`, `d:${b}`));
      expect([a, b, got]).toEqual([a, b, exact !== 0 ? exact : Math.sign(codePointCompare(`d:${a}`, `d:${b}`))]);
    }
  });

  it('refuses objects and NaN with VIEW_NOT_COMPARABLE', () => {
    expect(() => resultOf('min', [{}])).toThrow(expect.objectContaining({ code: 'VIEW_NOT_COMPARABLE' }));
    expect(() => resultOf('max', [NaN])).toThrow(/max needs .* got a number NaN/);
    expect(() => createAggregator('min').subtract({ values: [] }, 3)).toThrow(expect.objectContaining({ code: 'VIEW_NOT_ADDED' }));
  });
});

describe('changes applied at once (applyAll)', () => {
  it('min, max and count_distinct give the state of applying the changes one by one, input unchanged; a bad subtract throws', () => {
    const mixed: Gen = (r) => r.pick([smallInt, int64, decimalText, double, text])(r);
    for (const kind of ['min', 'max', 'count_distinct'] as const) {
      const agg = createAggregator(kind);
      expect(agg.applyAll, kind).toBeTypeOf('function');
      for (let seed = 1; seed <= 20; seed++) {
        const r = seeded(seed * 31 + kind.length);
        const present: unknown[] = Array.from({ length: r.int(0, 30) }, () => withNulls(mixed)(r));
        const start = viaJson(fold(agg, present));
        const before = JSON.stringify(start);
        const changes: [unknown, 1 | -1][] = [];
        for (let i = 0; i < r.int(1, 60); i++) {
          if (present.length > 0 && r.next() < 0.45) changes.push([present.splice(r.int(0, present.length - 1), 1)[0], -1]);
          else {
            const v = withNulls(mixed)(r);
            present.push(v);
            changes.push([v, 1]);
          }
        }
        const oneByOne = changes.reduce((st, [v, d]) => (d === 1 ? agg.add(st, v) : agg.subtract(st, v)), start);
        expect(agg.applyAll!(start, changes), `${kind} seed ${seed}`).toEqual(oneByOne);
        expect(JSON.stringify(start)).toBe(before);
      }
      expect(() => agg.applyAll!(agg.init(), [[1, 1], [2, -1]])).toThrow(expect.objectContaining({ code: 'VIEW_NOT_ADDED' }));
    }
  });
});

describe('count_distinct', () => {
  it('counts distinct non-null values under retractions', () => {
    const small: Gen = (r) => r.pick([1, 2, 3, '1.0', '2.00', 3n, null, 4]);
    const canonical = (v: unknown) => toDecimalString(normalizeDec(dec(v)));
    property('count_distinct', small, (vs) => new Set(nonNull(vs).map(canonical)).size);
    property('count_distinct', withNulls(text), (vs) => new Set(nonNull(vs)).size, { strings: 'text' });
    expect(resultOf('count_distinct', [])).toBe(0);
    expect(resultOf('count_distinct', [1, 1n, '1.000', 1.5])).toBe(2);
  });
});

function normalizeDec(d: Decimal): Decimal {
  let { m, s } = d;
  while (s > 0 && m % 10n === 0n) {
    m /= 10n;
    s -= 1;
  }
  return { m, s };
}

/** Two-pass reference: mean first, then squared deviations (exact: Σ(n·x − S)² / n³). */
function twoPassVariance(values: unknown[], sample: boolean): { num: Decimal; den: Decimal } | null {
  const xs = nonNull(values).map(dec);
  const n = BigInt(xs.length);
  if (xs.length === 0 || (sample && xs.length < 2)) return null;
  const scale = Math.max(...xs.map((x) => x.s));
  const ms = xs.map((x) => x.m * 10n ** BigInt(scale - x.s));
  const total = ms.reduce((a, b) => a + b, 0n);
  const squares = ms.reduce((acc, m) => acc + (n * m - total) ** 2n, 0n);
  // var = squares / 10^(2·scale) / n² / (n or n−1)
  return { num: { m: squares, s: 2 * scale }, den: { m: n * n * (sample ? n - 1n : n), s: 0 } };
}

describe('avg and variance', () => {
  it('match a two-pass reference on random doubles', () => {
    for (const kind of ['avg', 'var_pop', 'var_samp', 'stddev_pop', 'stddev_samp'] as const) {
      property(kind, withNulls(double), (vs) => {
        const xs = nonNull(vs) as number[];
        const n = xs.length;
        const sample = kind.endsWith('samp');
        return (got: AggValue) => {
          if (n === 0 || (sample && n < 2 && kind !== 'avg')) return expect(got).toBeNull();
          const mean = xs.reduce((a, b) => a + b, 0) / n;
          let want = mean;
          if (kind !== 'avg') {
            const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (sample ? n - 1 : n);
            want = kind.startsWith('stddev') ? Math.sqrt(v) : v;
          }
          expect(typeof got).toBe('number');
          const tolerance = 1e-9 * Math.max(Math.abs(want), kind === 'avg' ? 1e-6 : mean * mean * 1e-6, 1e-12);
          expect(Math.abs((got as number) - want)).toBeLessThanOrEqual(tolerance);
        };
      }, {}, 6, 120);
    }
  });

  it('match an exact two-pass reference on random decimals, rounded as PostgreSQL does', () => {
    for (const kind of ['var_pop', 'var_samp', 'stddev_pop', 'stddev_samp'] as const) {
      property(kind, withNulls(decimalText), (vs) => {
        const ref = twoPassVariance(vs, kind.endsWith('samp'));
        return (got: AggValue) => {
          if (ref === null) return expect(got).toBeNull();
          expect(typeof got).toBe('string');
          const g = deserializeDecimal(got as string);
          if (ref.num.m === 0n) return expect(got).toBe('0');
          if (kind.startsWith('var')) {
            expect(toDecimalString(divide(ref.num, ref.den, g.s))).toBe(got);
          } else {
            // got = round(sqrt(v)) at scale s: (got - ½ulp)² <= v < (got + ½ulp)², v itself rounded at s.
            const v = divide(ref.num, ref.den, g.s);
            const lo = { m: 2n * g.m - 1n, s: g.s + 1 };
            const hi = { m: 2n * g.m + 1n, s: g.s + 1 };
            const sq = (x: Decimal) => ({ m: x.m * x.m * 25n, s: 2 * x.s });
            expect(compare(sq(lo), { m: v.m * 10n ** BigInt(v.s + 2), s: 2 * v.s + 2 })).toBeLessThanOrEqual(0);
            expect(compare(sq(hi), { m: v.m * 10n ** BigInt(v.s + 2), s: 2 * v.s + 2 })).toBeGreaterThan(0);
          }
        };
      }, {}, 6, 100);
    }
  });

  it('print what PostgreSQL prints for integer and numeric columns', () => {
    // Each row: values, then avg, var_pop, var_samp, stddev_pop, stddev_samp, sum as psql printed them.
    const fixtures: [unknown[], AggValue[]][] = [
      [[1, 2, 4], ['2.3333333333333333', '1.5555555555555556', '2.3333333333333333', '1.2472191289246471', '1.5275252316519467', 7]],
      [['1.10', '2.205', '-3.5'], ['-0.06500000000000000000', '6.1031166666666667', '9.1546750000000000', '2.4704486771974573', '3.0256693474337212', '-0.195']],
    ];
    const kinds = ['avg', 'var_pop', 'var_samp', 'stddev_pop', 'stddev_samp', 'sum'] as const;
    for (const [values, printed] of fixtures) {
      expect(kinds.map((k) => resultOf(k, values))).toEqual(printed);
    }
    expect(resultOf('avg', ['123456789012', '0.001'])).toBe('61728394506.00050000');
    expect(resultOf('var_pop', ['123456789012', '0.001'])).toBe('3810394688288309255641.494000');
    expect(resultOf('stddev_samp', ['123456789012', '0.001'])).toBe('87297132693.901342');
    expect(resultOf('avg', ['0.00012', '0.00013', '0.0002'])).toBe('0.00015000000000000000');
    expect(resultOf('var_pop', ['0.00012', '0.00013', '0.0002'])).toBe('0.0000000012666666666666666667');
    expect(resultOf('stddev_samp', ['0.00012', '0.00013', '0.0002'])).toBe('0.0000435889894354067355223698');
    expect(resultOf('var_pop', [5])).toBe('0');
    expect(resultOf('stddev_pop', [5])).toBe('0');
    expect(resultOf('var_samp', [5])).toBeNull();
    expect(resultOf('stddev_samp', [5])).toBeNull();
    expect(resultOf('avg', ['9999', '1'])).toBe('5000.0000000000000000');
    expect(resultOf('var_pop', ['9999', '1'])).toBe('24990001.000000000000');
    expect(resultOf('stddev_pop', ['9999', '1'])).toBe('4999.000000000000');
    expect(resultOf('avg', [1n, 2, 3])).toBe('2.0000000000000000');
  });

  it('do not drift under many retractions (exact state)', () => {
    const agg = createAggregator('var_pop');
    let st = fold(agg, [1e9 + 4, 1e9 + 7, 1e9 + 13, 1e9 + 16]);
    const r = seeded(3);
    for (let i = 0; i < 5000; i++) {
      const x = r.next() * 1e12;
      st = agg.subtract(agg.add(st, x), x);
    }
    expect(agg.result(st)).toBe('22.5000000000000000');
    expect(resultOf('avg', [])).toBeNull();
    expect(resultOf('var_pop', [null])).toBeNull();
  });
});

describe('custom aggregations', () => {
  it('wrap the user functions and check that every state is JSON', () => {
    const product = aggregate<{ factors: number[] }>({
      name: 'product',
      init: () => ({ factors: [] }),
      add: (s, v) => ({ factors: [...s.factors, v as number] }),
      subtract: (s, v) => {
        const i = s.factors.indexOf(v as number);
        return { factors: s.factors.filter((_, j) => j !== i) };
      },
      result: (s) => s.factors.reduce((a, b) => a * b, 1),
    });
    let st = product.add(product.add(product.init(), 3), 4);
    expect(product.result(st)).toBe(12);
    st = product.subtract(st, 3);
    expect(product.result(JSON.parse(JSON.stringify(st)) as { factors: number[] })).toBe(4);

    const counter = createAggregator('custom', {
      custom: { init: () => 0, add: (s) => (s as number) + 1, subtract: (s) => (s as number) - 1 },
    });
    expect(counter.result(counter.add(counter.init(), 'x'))).toBe(1);
  });

  it('refuse states that would not survive jsonb: bigint, Map, Set, Date, NaN, undefined', () => {
    const bad: unknown[] = [1n, new Map(), new Set(), new Date(0), NaN, { a: undefined }, [1, { b: 2n }]];
    for (const state of bad) {
      const agg = createAggregator('custom', {
        custom: { name: 'broken', init: () => state as JsonValue, add: (s) => s, subtract: (s) => s },
      });
      expect(() => agg.init()).toThrow(expect.objectContaining({ code: 'VIEW_STATE_NOT_JSON', stage: 'view' }));
    }
    expect(() => createAggregator('custom', {
      custom: { init: () => ({ a: 1 }), add: (s) => s, subtract: (s) => s },
    }).result({ a: 1 })).toThrow(ViewSpecError);
    expect(() => createAggregator('custom')).toThrow(ViewSpecError);
  });
});

describe('merging groups (session windows)', () => {
  it('gives every built-in the state of the union of two groups (random)', () => {
    const gens: Partial<Record<AggregationKind, Gen>> = {
      count: withNulls(smallInt),
      sum: withNulls((r) => r.pick([int64, decimalText])(r)),
      min: withNulls((r) => r.pick([smallInt, decimalText, double])(r)),
      max: withNulls(text),
      avg: withNulls(double),
      var_pop: withNulls(decimalText),
      var_samp: withNulls(smallInt),
      stddev_pop: withNulls(double),
      stddev_samp: withNulls(decimalText),
      count_distinct: withNulls((r) => r.int(0, 12)),
    };
    for (const [kind, gen] of Object.entries(gens) as [AggregationKind, Gen][]) {
      const agg = createAggregator(kind);
      const r = seeded(kind.length * 31);
      for (let round = 0; round < 60; round++) {
        const a = Array.from({ length: r.int(0, 20) }, () => gen(r));
        const b = Array.from({ length: r.int(0, 20) }, () => gen(r));
        const merged = viaJson(agg.merge!(fold(agg, a), fold(agg, b)));
        expect(agg.result(merged), `${kind} round ${round}`).toEqual(agg.result(fold(agg, [...a, ...b])));
        // The merged state keeps retracting correctly.
        if (a.length > 0) {
          expect(agg.result(agg.subtract(merged, a[0]))).toEqual(agg.result(fold(agg, [...a.slice(1), ...b])));
        }
      }
    }
  });

  it('wraps a custom merge and checks its state; no merge without one', () => {
    const withMerge = createAggregator('custom', {
      custom: { init: () => 0, add: (s) => (s as number) + 1, subtract: (s) => (s as number) - 1, merge: (x, y) => (x as number) + (y as number) },
    });
    expect(withMerge.merge!(2, 3)).toBe(5);
    const broken = createAggregator('custom', {
      custom: { init: () => 0, add: (s) => s, subtract: (s) => s, merge: () => NaN },
    });
    expect(() => broken.merge!(1, 2)).toThrow(expect.objectContaining({ code: 'VIEW_STATE_NOT_JSON' }));
    expect(createAggregator('custom', { custom: { init: () => 0, add: (s) => s, subtract: (s) => s } }).merge).toBeUndefined();
  });
});

describe('registry', () => {
  it('has every kind, and every built-in state of an empty and a full group survives JSON', () => {
    for (const kind of Object.keys(AGGREGATIONS) as AggregationKind[]) {
      if (kind === 'custom') continue;
      const agg = createAggregator(kind);
      expect(agg.kind).toBe(kind);
      const empty = agg.init();
      expect(viaJson(empty)).toEqual(empty);
      const full = [1, 2n, 9007199254740993n, 3].reduce<JsonValue>((s, v) => agg.add(s, v), empty);
      expect(viaJson(full)).toEqual(full);
      expect(agg.result(viaJson(full))).toEqual(agg.result(full));
    }
  });
});

interface PostgresCase {
  readonly type: 'numeric' | 'int8' | 'int4';
  readonly values: string[];
  readonly postgres: Record<string, string | null>;
}

/** A value as the decoder hands it over: numeric as text, int8 as a number or (beyond 2^53) a bigint. */
function decoded(type: PostgresCase['type'], text: string): unknown {
  if (type === 'numeric') return text;
  const n = BigInt(text);
  return n >= -MAX_SAFE && n <= MAX_SAFE ? Number(n) : n;
}

describe('against PostgreSQL', () => {
  // Generated from a real server by view-postgres-fixtures.gen.ts.
  const fixtures = JSON.parse(readFileSync(new URL('./view-postgres-fixtures.json', import.meta.url), 'utf8')) as {
    cases: PostgresCase[];
  };

  it('prints exactly what PostgreSQL prints for numeric, int8 and int4 groups, after retractions too', () => {
    expect(fixtures.cases.length).toBeGreaterThanOrEqual(100);
    const r = seeded(31337);
    for (const [i, c] of fixtures.cases.entries()) {
      const values = c.values.map((v) => decoded(c.type, v));
      for (const [kind, printed] of Object.entries(c.postgres)) {
        const agg = createAggregator(kind as AggregationKind);
        // Other rows come and go (updates, deletes) around the ones that stay, in a random order.
        const noise = values.map(() => decoded(c.type, String(r.int(-1e6, 1e6))));
        const order = [...values, ...noise].sort(() => r.next() - 0.5);
        let state = order.reduce<JsonValue>((s, v) => agg.add(s, v), agg.init());
        for (const v of noise) state = viaJson(agg.subtract(state, v));
        const got = agg.result(state);
        expect(got === null ? null : String(got), `case ${i} ${c.type} ${kind}`).toBe(printed);
      }
    }
  });
});
