import type { AggValue, Aggregator } from '../aggregation.ts';
import {
  type Decimal,
  divide,
  divideToNumber,
  mul,
  postgresDivisionScale,
  sqrt,
  sub,
  toDecimalString,
} from '../exact.ts';
import {
  type MomentsState,
  applyMoment,
  exactSum,
  exactSumOfSquares,
  initMoments,
  mergeMoments,
  resultClass,
} from './moments.ts';

export type VarianceKind = 'var_pop' | 'var_samp' | 'stddev_pop' | 'stddev_samp';

/**
 * Variance from the exact count, sum and sum of squares: (n·Σx² − (Σx)²) / (n·n) for the
 * population, / (n·(n−1)) for a sample. Exact state means no drift however many retractions
 * (Welford's running mean would drift under subtract). Like PostgreSQL: null for an empty group,
 * var_samp/stddev_samp null below two values; integer and decimal inputs give PostgreSQL's numeric
 * result (its division scale, the square root rounded at that scale), float inputs a double from
 * one rounding of the exact variance. The standard deviation is the square root of the variance.
 */
function varianceResult(kind: VarianceKind, state: MomentsState): AggValue {
  const sample = kind === 'var_samp' || kind === 'stddev_samp';
  const root = kind === 'stddev_pop' || kind === 'stddev_samp';
  if (state.n === 0 || (sample && state.n < 2)) return null;
  const n: Decimal = { m: BigInt(state.n), s: 0 };
  const sum = exactSum(state);
  // Scale 2·(largest input scale), as PostgreSQL computes it (numeric_stddev_internal).
  const numerator = sub(mul(n, exactSumOfSquares(state)), mul(sum, sum));
  const denominator: Decimal = { m: BigInt(state.n) * BigInt(sample ? state.n - 1 : state.n), s: 0 };
  if (resultClass(state) === 'float') {
    const variance = numerator.m <= 0n ? 0 : divideToNumber(numerator, denominator);
    return root ? Math.sqrt(variance) : variance;
  }
  if (numerator.m <= 0n) return '0';
  const scale = postgresDivisionScale(numerator, denominator);
  const variance = divide(numerator, denominator, scale);
  return toDecimalString(root ? sqrt(variance, scale) : variance);
}

export function createVariance(kind: VarianceKind): Aggregator<MomentsState> {
  return {
    kind,
    init: () => initMoments(true),
    add: (state, value) => applyMoment(state, value, 1, kind),
    subtract: (state, value) => applyMoment(state, value, -1, kind),
    result: (state) => varianceResult(kind, state),
    merge: mergeMoments,
  };
}

