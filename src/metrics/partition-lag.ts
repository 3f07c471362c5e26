/**
 * One rule for lag, shared by `/status`, the lag gauge and `offsets show`: the records the group
 * has still to read on a partition. A partition the group never committed on is read from its first
 * retained offset when `from_beginning` is true, so that is its lag; otherwise the group will start
 * at whatever the end is then, and its lag is unknown (undefined), never 0.
 */
export function partitionLag(offsets: { readonly low: bigint; readonly end: bigint }, committed: bigint | undefined, fromBeginning: boolean): bigint | undefined {
  const from = committed ?? (fromBeginning ? offsets.low : undefined);
  if (from === undefined) return undefined;
  // A committed offset below the log start (retention) still has only `end - low` to read.
  const lag = offsets.end - (from > offsets.low ? from : offsets.low);
  return lag > 0n ? lag : 0n;
}

/** The sum of the partitions' lags; undefined when one is unknown or there is no partition (a partial sum would understate). */
export function totalLag(lags: readonly (bigint | undefined)[]): bigint | undefined {
  if (lags.length === 0) return undefined;
  let sum = 0n;
  for (const lag of lags) {
    if (lag === undefined) return undefined;
    sum += lag;
  }
  return sum;
}
