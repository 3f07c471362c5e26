import type { AggValue, Aggregator } from '../aggregation.ts';
import { type Decimal, divide, divideToNumber, postgresDivisionScale, toDecimalString } from '../exact.ts';
import { type MomentsState, applyMoment, exactSum, initMoments, mergeMoments, resultClass } from './moments.ts';

/**
 * SQL avg: null for an empty group. Integer and decimal inputs give PostgreSQL's numeric avg
 * exactly (its division scale and rounding: avg(1, 2) = '1.5000000000000000'); float inputs give
 * the exact mean rounded once to a double.
 */
function avgResult(state: MomentsState): AggValue {
  if (state.n === 0) return null;
  const sum = exactSum(state);
  const n: Decimal = { m: BigInt(state.n), s: 0 };
  if (resultClass(state) === 'float') return divideToNumber(sum, n);
  return toDecimalString(divide(sum, n, postgresDivisionScale(sum, n)));
}

export function createAvg(): Aggregator<MomentsState> {
  return {
    kind: 'avg',
    init: () => initMoments(false),
    add: (state, value) => applyMoment(state, value, 1, 'avg'),
    subtract: (state, value) => applyMoment(state, value, -1, 'avg'),
    result: avgResult,
    merge: mergeMoments,
  };
}
