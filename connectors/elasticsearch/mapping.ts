import type { ColumnSchema } from '../../src/model/change-event.ts';

/**
 * Field types for an index the sink creates, from the Debezium schema of the first change it sees.
 * Dynamic mapping guesses from the first value: a double column whose first value is 0.5 becomes
 * `float`, and a later 1e300 is then refused; an int64 whose first value is small becomes `long` by
 * luck. Only plain numbers and booleans are mapped here: every other column (strings, decimals as
 * exact strings, temporal values as ISO strings, Json) keeps dynamic mapping, which suits it.
 */
const PLAIN: Readonly<Record<string, string>> = {
  int8: 'byte',
  int16: 'short',
  int32: 'integer',
  int64: 'long',
  float: 'float',
  double: 'double',
  boolean: 'boolean',
};

export function mappingFromColumns(columns: readonly ColumnSchema[] | undefined): Record<string, { type: string }> {
  const properties: Record<string, { type: string }> = {};
  for (const c of columns ?? []) {
    // A semantic type changes the value's form (MicroTimestamp's int64 arrives as an ISO string).
    const type = c.semantic === undefined ? PLAIN[c.type] : undefined;
    if (type) properties[c.name] = { type };
  }
  return properties;
}
