import type { Aggregator } from '../aggregation.ts';
import { type Counted, countedApply, countedApplyAll, countedMerge } from './counted.ts';
import { type StringMode, compareKeys, keyValue, valueKey } from './value-order.ts';

/** Every non-null value with its count, in value order: retracting the extreme falls back to the next. */
export interface ExtremumState {
  readonly values: Counted;
}

export function createExtremum(kind: 'min' | 'max', strings: StringMode): Aggregator<ExtremumState> {
  const apply = (state: ExtremumState, value: unknown, delta: 1 | -1): ExtremumState => {
    const key = valueKey(value, strings, kind);
    return key === null ? state : { values: countedApply(state.values, key, delta, compareKeys, kind) };
  };
  return {
    kind,
    init: () => ({ values: [] }),
    add: (state, value) => apply(state, value, 1),
    subtract: (state, value) => apply(state, value, -1),
    applyAll: (state, changes) => ({
      values: countedApplyAll(
        state.values,
        changes.map(([value, delta]) => [valueKey(value, strings, kind), delta] as const),
        compareKeys,
        kind,
      ),
    }),
    result: (state) => {
      const entry = kind === 'min' ? state.values[0] : state.values.at(-1);
      return entry ? keyValue(entry[0]) : null;
    },
    merge: (a, b) => ({ values: countedMerge(a.values, b.values, compareKeys) }),
  };
}
