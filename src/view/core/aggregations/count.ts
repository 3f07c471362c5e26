import type { Aggregator } from '../aggregation.ts';
import { ViewInputError } from '../errors.ts';

export interface CountState {
  readonly n: number;
}

/** Present in SQL terms: count(*) counts every row, count(col) only non-null values. */
function counts(star: boolean, value: unknown): boolean {
  if (star) return true;
  if (value === undefined) {
    throw new ViewInputError('VIEW_NOT_NUMERIC', 'count(column) got no value (undefined): is the column missing?');
  }
  return value !== null;
}

export function createCount(options: { readonly star?: boolean } = {}): Aggregator<CountState> {
  const star = options.star ?? false;
  return {
    kind: 'count',
    init: () => ({ n: 0 }),
    add: (state, value) => (counts(star, value) ? { n: state.n + 1 } : state),
    subtract: (state, value) => {
      if (!counts(star, value)) return state;
      if (state.n <= 0) throw new ViewInputError('VIEW_NOT_ADDED', 'count: subtract from an empty group');
      return { n: state.n - 1 };
    },
    result: (state) => state.n,
    merge: (a, b) => ({ n: a.n + b.n }),
  };
}
