import { ViewInputError, describeType } from '../errors.ts';
import {
  type Decimal,
  add,
  deserializeDecimal,
  mul,
  rescale,
  serializeDecimal,
  sub,
  toDecimal,
  ZERO,
} from '../exact.ts';

/**
 * Exact running count, sum and (for variance) sum of squares of a numeric column, shared by sum,
 * avg and the variance family. Each input's class is counted so that the result type follows the
 * values that are still in the group, the way PostgreSQL's result type follows the column's:
 * - any decimal text (numeric column): an exact decimal string (PostgreSQL numeric);
 * - else any non-integer or unsafe number (float column): a double, rounded once from the exact value;
 * - else integers (int2/4/8 columns): see each aggregation.
 */
export interface MomentsState {
  /** Non-null values in the group. */
  readonly n: number;
  readonly sum: string;
  /** Only kept by the variance family. */
  readonly sumSq?: string;
  readonly ints: number;
  readonly decimals: number;
  readonly floats: number;
  /** [display scale, how many values have it], ascending: the result keeps the largest scale present. */
  readonly scales: [number, number][];
}

export type NumericClass = 'int' | 'decimal' | 'float';

export function initMoments(squares: boolean): MomentsState {
  const base = { n: 0, sum: '0', ints: 0, decimals: 0, floats: 0, scales: [] };
  return squares ? { ...base, sumSq: '0' } : base;
}

function classify(value: unknown): NumericClass {
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'number') return Number.isSafeInteger(value) ? 'int' : 'float';
  return 'decimal';
}

function bumpScale(scales: [number, number][], scale: number, delta: 1 | -1, what: string): [number, number][] {
  const out = scales.map(([s, c]): [number, number] => [s, c]);
  const i = out.findIndex(([s]) => s >= scale);
  const entry = i >= 0 ? out[i] : undefined;
  if (entry && entry[0] === scale) {
    entry[1] += delta;
    if (entry[1] === 0) out.splice(i, 1);
    return out;
  }
  if (delta < 0) throw new ViewInputError('VIEW_NOT_ADDED', `${what}: subtract of a value that was never added`);
  out.splice(i >= 0 ? i : out.length, 0, [scale, 1]);
  return out;
}

/** Adds (delta 1) or retracts (delta -1) one value; null leaves the state as it is (SQL ignores nulls). */
export function applyMoment(state: MomentsState, value: unknown, delta: 1 | -1, what: string): MomentsState {
  if (value === null) return state;
  if (value === undefined || typeof value === 'boolean') {
    throw new ViewInputError('VIEW_NOT_NUMERIC', `${what} needs a number, a bigint or decimal text, got ${describeType(value)}`);
  }
  const d = toDecimal(value, what);
  if (delta < 0 && state.n <= 0) throw new ViewInputError('VIEW_NOT_ADDED', `${what}: subtract from an empty group`);
  const cls = classify(value);
  const signed: Decimal = delta > 0 ? d : { m: -d.m, s: d.s };
  const next: MomentsState = {
    n: state.n + delta,
    sum: serializeDecimal(add(deserializeDecimal(state.sum), signed)),
    ints: state.ints + (cls === 'int' ? delta : 0),
    decimals: state.decimals + (cls === 'decimal' ? delta : 0),
    floats: state.floats + (cls === 'float' ? delta : 0),
    scales: bumpScale(state.scales, d.s, delta, what),
  };
  if (state.sumSq === undefined) return next;
  const square = mul(d, d);
  const sumSq = deserializeDecimal(state.sumSq);
  return { ...next, sumSq: serializeDecimal(delta > 0 ? add(sumSq, square) : sub(sumSq, square)) };
}

/** Which result type the surviving values call for. */
export function resultClass(state: MomentsState): NumericClass {
  if (state.decimals > 0) return 'decimal';
  return state.floats > 0 ? 'float' : 'int';
}

/** The largest display scale among the surviving values (PostgreSQL numeric's sum keeps it). */
export function maxScale(state: MomentsState): number {
  return state.scales.at(-1)?.[0] ?? 0;
}

/** The exact sum at the largest surviving display scale (drops only zeros left by retractions). */
export function exactSum(state: MomentsState): Decimal {
  return state.n === 0 ? ZERO : rescale(deserializeDecimal(state.sum), maxScale(state));
}

export function exactSumOfSquares(state: MomentsState): Decimal {
  if (state.sumSq === undefined) throw new RangeError('state keeps no sum of squares');
  return state.n === 0 ? ZERO : rescale(deserializeDecimal(state.sumSq), 2 * maxScale(state));
}

function mergeScales(a: [number, number][], b: [number, number][]): [number, number][] {
  const counts = new Map<number, number>();
  for (const [s, c] of [...a, ...b]) counts.set(s, (counts.get(s) ?? 0) + c);
  return [...counts.entries()].sort(([x], [y]) => x - y);
}

function addText(a: string, b: string): string {
  return serializeDecimal(add(deserializeDecimal(a), deserializeDecimal(b)));
}

/** The moments of the union of two groups' values. */
export function mergeMoments(a: MomentsState, b: MomentsState): MomentsState {
  const merged: MomentsState = {
    n: a.n + b.n,
    sum: addText(a.sum, b.sum),
    ints: a.ints + b.ints,
    decimals: a.decimals + b.decimals,
    floats: a.floats + b.floats,
    scales: mergeScales(a.scales, b.scales),
  };
  if (a.sumSq === undefined || b.sumSq === undefined) return merged;
  return { ...merged, sumSq: addText(a.sumSq, b.sumSq) };
}
