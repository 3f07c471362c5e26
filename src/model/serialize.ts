import { isUnavailable, type Row } from './change-event.ts';
import { holdsKeptJson, stringifyKeepingDigits } from './raw-json.ts';

/** How the unavailable-value marker looks in JSON output: distinguishable from any column value. */
export const UNAVAILABLE_JSON = Object.freeze({ $unavailable: true });

/** JSON.stringify replacer for events: bigints as strings, the TOAST marker as UNAVAILABLE_JSON. */
export function eventJsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (isUnavailable(value)) return UNAVAILABLE_JSON;
  return value;
}

const bigintAsString = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

/** JSON with bigints (integers beyond 2^53) as decimal strings. */
export function jsonWithBigints(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (err) {
    // Only bigints throw here; the replacer costs a call per value, so it is the fallback.
    if (!(err instanceof TypeError)) throw err;
    return JSON.stringify(value, bigintAsString);
  }
}

/** Rows are shared by every sink of a route (and never changed after the transforms): each is serialized once. */
const rowJsonCache = new WeakMap<Readonly<Row>, string>();

/** A row as JSON (see jsonWithBigints; Json columns with every digit, see raw-json.ts), once per row object. */
export function rowJson(row: Readonly<Row>): string {
  let json = rowJsonCache.get(row);
  if (json === undefined) {
    json = holdsKeptJson(row) ? stringifyKeepingDigits(row, bigintAsString) : jsonWithBigints(row);
    rowJsonCache.set(row, json);
  }
  return json;
}
