/**
 * InfluxDB 1.x line protocol, hand-written: the `influx` npm package writes integer fields through
 * `Math.floor(number)` (int64 beyond 2^53 loses digits, a bigint throws), and the 2.x clients need
 * /api/v2/write, which 1.6 lacks. The escaping rules below are 1.x's parser's, checked against a real
 * server (test/integration/influxdb-sink.test.ts):
 * - measurement: `,` and space escaped with `\`;
 * - tag keys, tag values, field keys: `,`, `=` and space escaped;
 * - string field values: in double quotes, `"` and `\` escaped; newlines are fine there;
 * - a `\` elsewhere is kept as it is (`a\b` stays `a\b`), so a `\` right before a character that must
 *   be escaped, or at the end, cannot be written, nor can a newline: such names and tag values are
 *   refused rather than changed.
 */

export type FieldValue =
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'integer'; readonly value: bigint }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'boolean'; readonly value: boolean };

export interface Point {
  readonly measurement: string;
  /** Tag key/value pairs; empty values are left out (InfluxDB has no empty tags). */
  readonly tags: readonly (readonly [string, string])[];
  readonly fields: readonly (readonly [string, FieldValue])[];
  /** In the write's precision. */
  readonly time: bigint;
}

/** A name or value line protocol cannot carry; the record fails with this message, nothing is altered. */
export class UnrepresentableError extends Error {
  override readonly name = 'UnrepresentableError';
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function check(what: string, s: string, special: RegExp): void {
  if (s.length === 0) throw new UnrepresentableError(`${what} is empty`);
  if (/[\n\r]/.test(s)) throw new UnrepresentableError(`${what} ${JSON.stringify(s)} contains a line break, which line protocol cannot carry`);
  if (s.endsWith('\\') || special.test(s)) {
    throw new UnrepresentableError(
      `${what} ${JSON.stringify(s)} has a backslash at its end or before a space, comma or equals sign, which InfluxDB 1.x cannot read back`,
    );
  }
}

const BACKSLASH_BEFORE_MEASUREMENT_SPECIAL = /\\[ ,]/;
const BACKSLASH_BEFORE_KEY_SPECIAL = /\\[ ,=]/;

export function escapeMeasurement(s: string): string {
  check('measurement', s, BACKSLASH_BEFORE_MEASUREMENT_SPECIAL);
  return s.replace(/[ ,]/g, '\\$&');
}

/** Tag keys, tag values and field keys. */
export function escapeKey(what: string, s: string): string {
  check(what, s, BACKSLASH_BEFORE_KEY_SPECIAL);
  return s.replace(/[ ,=]/g, '\\$&');
}

export function quoteString(s: string): string {
  return `"${s.replace(/[\\"]/g, '\\$&')}"`;
}

export function formatField(name: string, v: FieldValue): string {
  switch (v.type) {
    case 'float':
      if (!Number.isFinite(v.value)) throw new UnrepresentableError(`field ${JSON.stringify(name)}: ${v.value} is not a finite number`);
      return String(v.value);
    case 'integer':
      if (v.value < INT64_MIN || v.value > INT64_MAX) {
        throw new UnrepresentableError(`field ${JSON.stringify(name)}: ${v.value} is outside the int64 range`);
      }
      return `${v.value}i`;
    case 'string':
      return quoteString(v.value);
    case 'boolean':
      return v.value ? 'true' : 'false';
  }
}

/** One point as one line (no trailing newline). Tags sorted by key, as InfluxDB recommends. */
export function encodeLine(point: Point): string {
  if (point.fields.length === 0) throw new UnrepresentableError('the point has no field with a value (all null or excluded)');
  let line = escapeMeasurement(point.measurement);
  const tags = point.tags.filter(([, v]) => v.length > 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [k, v] of tags) line += `,${escapeKey('tag key', k)}=${escapeKey('tag value', v)}`;
  line += ' ';
  line += point.fields.map(([k, v]) => `${escapeKey('field key', k)}=${formatField(k, v)}`).join(',');
  return `${line} ${point.time}`;
}

const UNITS_NS: Readonly<Record<'ns' | 'us' | 'ms' | 's', bigint>> = { ns: 1n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n };

/** Nanoseconds per unit. */
export function nanosPer(unit: 'ns' | 'us' | 'ms' | 's'): bigint {
  return UNITS_NS[unit];
}

/**
 * A time in nanoseconds as a count of `precision`. A remainder (a µs time into ms) fails unless
 * `truncate` is set; then it goes toward the past (floor), like InfluxDB's own rounding of queries.
 */
export function toPrecision(ns: bigint, precision: 'ns' | 'us' | 'ms' | 's', truncate: boolean): bigint {
  const per = UNITS_NS[precision];
  const rem = ns % per;
  if (rem === 0n) return ns / per;
  if (!truncate) {
    throw new UnrepresentableError(
      `time ${ns} ns has digits below the sink's precision ${precision}; set precision finer or on_precision_loss: truncate`,
    );
  }
  return (ns - (rem < 0n ? rem + per : rem)) / per;
}

/** The /write API's `precision` parameter. */
export const PRECISION_PARAM: Readonly<Record<'ns' | 'us' | 'ms' | 's', string>> = { ns: 'n', us: 'u', ms: 'ms', s: 's' };
