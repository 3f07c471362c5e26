import type { AggValue, Aggregator } from '../aggregation.ts';
import { toDecimalString, toNumber } from '../exact.ts';
import { type MomentsState, applyMoment, exactSum, initMoments, mergeMoments, resultClass } from './moments.ts';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * SQL sum: nulls ignored, null for a group without a non-null value. Computed exactly; the result:
 * decimal text inputs -> exact decimal string at the largest input scale ('1.10' + '2.205' =
 * '3.305'); float inputs -> the exact sum rounded once to a double; integer inputs -> a number when
 * |sum| <= 2^53 - 1, else a bigint (never rounded).
 */
function sumResult(state: MomentsState): AggValue {
  if (state.n === 0) return null;
  const sum = exactSum(state);
  switch (resultClass(state)) {
    case 'decimal':
      return toDecimalString(sum);
    case 'float':
      return toNumber(sum);
    case 'int':
      return sum.m >= -MAX_SAFE && sum.m <= MAX_SAFE ? Number(sum.m) : sum.m;
  }
}

export function createSum(): Aggregator<MomentsState> {
  return {
    kind: 'sum',
    init: () => initMoments(false),
    add: (state, value) => applyMoment(state, value, 1, 'sum'),
    subtract: (state, value) => applyMoment(state, value, -1, 'sum'),
    result: sumResult,
    merge: mergeMoments,
  };
}
