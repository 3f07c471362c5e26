import type { Aggregator } from '../aggregation.ts';
import { type Counted, countedApply, countedApplyAll, countedMerge } from './counted.ts';
import { type StringMode, equalityKey, valueKey } from './value-order.ts';

/** Each distinct non-null value with how many rows hold it. */
export interface CountDistinctState {
  readonly values: Counted;
}

function codePointOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** SQL count(DISTINCT col): non-null values, equal numbers counted once whatever their form. */
export function createCountDistinct(options: { readonly strings?: StringMode } = {}): Aggregator<CountDistinctState> {
  const strings = options.strings ?? 'auto';
  const apply = (state: CountDistinctState, value: unknown, delta: 1 | -1): CountDistinctState => {
    const key = valueKey(value, strings, 'count_distinct');
    if (key === null) return state;
    return { values: countedApply(state.values, equalityKey(key), delta, codePointOrder, 'count_distinct') };
  };
  return {
    kind: 'count_distinct',
    init: () => ({ values: [] }),
    add: (state, value) => apply(state, value, 1),
    subtract: (state, value) => apply(state, value, -1),
    applyAll: (state, changes) => ({
      values: countedApplyAll(
        state.values,
        changes.map(([value, delta]) => {
          const key = valueKey(value, strings, 'count_distinct');
          return [key === null ? null : equalityKey(key), delta] as const;
        }),
        codePointOrder,
        'count_distinct',
      ),
    }),
    result: (state) => state.values.length,
    merge: (a, b) => ({ values: countedMerge(a.values, b.values, codePointOrder) }),
  };
}
