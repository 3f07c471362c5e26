import type { Aggregator } from '../aggregation.ts';
import { type ExtremumState, createExtremum } from './extremum.ts';
import type { StringMode } from './value-order.ts';

/** SQL min over the values present now; null for an empty group. */
export function createMin(options: { readonly strings?: StringMode } = {}): Aggregator<ExtremumState> {
  return createExtremum('min', options.strings ?? 'auto');
}
