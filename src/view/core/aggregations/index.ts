import type { AggregationKind, AggregationOptions, Aggregator, JsonValue } from '../aggregation.ts';
import { ViewSpecError } from '../errors.ts';
import { createAvg } from './avg.ts';
import { createCount } from './count.ts';
import { createCountDistinct } from './count-distinct.ts';
import { aggregate } from './custom.ts';
import { createMax } from './max.ts';
import { createMin } from './min.ts';
import { createSum } from './sum.ts';
import { createVariance } from './variance.ts';

// Every built-in state is JSON; the registry hides each one's shape behind this type.
export type AnyAggregator = Aggregator<JsonValue>;
type AggregationFactory = (options: AggregationOptions) => AnyAggregator;

function erase<S>(aggregator: Aggregator<S>): AnyAggregator {
  return aggregator as unknown as AnyAggregator;
}

/** One factory per kind; the composition root looks kinds up here. */
export const AGGREGATIONS = {
  count: (o) => erase(createCount(o)),
  sum: () => erase(createSum()),
  min: (o) => erase(createMin(o)),
  max: (o) => erase(createMax(o)),
  avg: () => erase(createAvg()),
  var_pop: () => erase(createVariance('var_pop')),
  var_samp: () => erase(createVariance('var_samp')),
  stddev_pop: () => erase(createVariance('stddev_pop')),
  stddev_samp: () => erase(createVariance('stddev_samp')),
  count_distinct: (o) => erase(createCountDistinct(o)),
  custom: (o) => {
    if (!o.custom) throw new ViewSpecError('aggregation kind custom needs its functions (aggregate({ init, add, subtract }))');
    return aggregate(o.custom);
  },
} satisfies Record<AggregationKind, AggregationFactory>;

export function createAggregator(kind: AggregationKind, options: AggregationOptions = {}): AnyAggregator {
  return AGGREGATIONS[kind](options);
}

export { aggregate, createAvg, createCount, createCountDistinct, createMax, createMin, createSum, createVariance };
export type { VarianceKind } from './variance.ts';
