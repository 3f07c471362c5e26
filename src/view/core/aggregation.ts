/**
 * The contract between a view's runtime and its aggregations. An aggregation is a retractable fold:
 * `subtract` undoes an earlier `add` exactly, so an update of a row is subtract(old) + add(new)
 * and the state stays equal to a fold over the rows that exist now. States are JSON values (the
 * runtime stores them as PostgreSQL jsonb): no bigint, Map, Set, undefined or class instances.
 */

/** What a column value or an aggregation result can be. */
export type AggValue = number | bigint | string | boolean | null;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface Aggregator<S, T extends AggValue = AggValue> {
  readonly kind: string;
  /** The state of an empty group; JSON-serializable. */
  init(): S;
  /** `value` is the column's value as decoded: number, bigint, decimal text, text, boolean or null. */
  add(state: S, value: unknown): S;
  /** The exact inverse of `add` for a value that was added before. */
  subtract(state: S, value: unknown): S;
  result(state: S): T;
  /**
   * Optional: the state after these changes (1: add, -1: subtract), exactly as applying them one
   * by one. For states costly to copy (a min or max keeps every value): one copy per batch, not per change.
   */
  applyAll?(state: S, changes: readonly (readonly [value: unknown, delta: 1 | -1])[]): S;
  /**
   * The state of the union of two groups' values, for session windows that merge (Kafka Streams'
   * Merger). Every built-in has it; a custom aggregation without it cannot feed session windows.
   */
  merge?(a: S, b: S): S;
}

export type AggregationKind =
  | 'count'
  | 'sum'
  | 'min'
  | 'max'
  | 'avg'
  | 'var_pop'
  | 'var_samp'
  | 'stddev_pop'
  | 'stddev_samp'
  | 'count_distinct'
  | 'custom';

/** User-supplied retractable aggregation (`aggregate({ init, add, subtract, result })`). */
export interface CustomAggregation<S, T extends AggValue = AggValue> {
  readonly name?: string;
  init(): S;
  add(state: S, value: unknown): S;
  subtract(state: S, value: unknown): S;
  /** Defaults to the state itself, which must then be a number, string, boolean or null. */
  result?(state: S): T;
  /** Needed only for session windows: the state of the union of two groups' values. */
  merge?(a: S, b: S): S;
}

export interface AggregationOptions {
  /** count: count rows (SQL count(*)), nulls included. Default false: count(col), non-null values only. */
  readonly star?: boolean;
  /**
   * min, max, count_distinct: how string values compare. 'auto' (default): decimal text (Connect
   * Decimal columns arrive as text) compares numerically with numbers and bigints, other text by
   * code point. 'text': every string by code point (a text column whose values look like numbers).
   */
  readonly strings?: 'auto' | 'text';
  /** custom: the user's functions. */
  readonly custom?: CustomAggregation<JsonValue>;
}
