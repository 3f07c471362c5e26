import type { AggValue } from '../aggregation.ts';
import { ViewInputError, describeType } from '../errors.ts';
import { type Decimal, compare, normalize, parseDecimal, toDecimal, toDecimalString } from '../exact.ts';

export type StringMode = 'auto' | 'text';

/**
 * Values kept in a multiset are stored as JSON-safe text keys that keep their type:
 * 'n:' number (shortest round-trip text), 'i:' bigint, 'd:' decimal text, 's:' text, 'b:' boolean.
 */
export type ValueKey = string;

/** The decoder's decimal text: '-12.340', or JavaScript's exponent form for very large or small values. */
const DECODED_DECIMAL = /^-?\d+(?:\.\d+)?(?:e[+-]\d+)?$/;

function isDecimalText(text: string, strings: StringMode): boolean {
  return strings === 'auto' && DECODED_DECIMAL.test(text) && parseDecimal(text) !== undefined;
}

/** The key of a decoded value, or null for SQL NULL (ignored by min, max and count distinct). */
export function valueKey(value: unknown, strings: StringMode, what: string): ValueKey | null {
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) break;
      return `n:${value}`;
    case 'bigint':
      return `i:${value}`;
    case 'string':
      return isDecimalText(value, strings) ? `d:${value}` : `s:${value}`;
    case 'boolean':
      return `b:${value}`;
    case 'object':
      if (value === null) return null;
      break;
  }
  throw new ViewInputError(
    'VIEW_NOT_COMPARABLE',
    `${what} needs a number, bigint, string or boolean, got ${describeType(value)}${typeof value === 'number' ? ` ${value}` : ''}`,
  );
}

/** The value a key was made from. */
export function keyValue(key: ValueKey): AggValue {
  const body = key.slice(2);
  switch (key[0]) {
    case 'n':
      return Number(body);
    case 'i':
      return BigInt(body);
    case 'b':
      return body === 'true';
    default:
      return body;
  }
}

/** Booleans first (false < true), then numbers of every kind by value, then text. */
function rank(key: ValueKey): number {
  switch (key[0]) {
    case 'b':
      return 0;
    case 's':
      return 2;
    default:
      return 1;
  }
}

function numericOf(key: ValueKey): Decimal {
  return toDecimal(key[0] === 'i' ? BigInt(key.slice(2)) : key.slice(2), 'compare');
}

/** UTF-16 code unit moved so that code units order as code points: surrogates above U+E000–U+FFFF. */
function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  return unit >= 0xe000 ? unit - 0x800 : unit;
}

/** Code point order, which is UTF-8 byte order: PostgreSQL's COLLATE "C" on a UTF-8 database. */
export function codePointCompare(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Plain decimal text without an exponent, as the decoder writes Connect decimals. */
const PLAIN_DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/**
 * Two plain decimal texts by value, digit by digit: a multiset's binary search compares a value
 * with a dozen others, and parsing both into bigints each time was most of a min or max's cost.
 * Undefined when either is not plain (an exponent): the exact comparison decides.
 */
function comparePlainDecimals(a: string, b: string): number | undefined {
  const x = PLAIN_DECIMAL.exec(a);
  const y = PLAIN_DECIMAL.exec(b);
  if (!x || !y) return undefined;
  const [, sx = '', ix = '', fx = ''] = x;
  const [, sy = '', iy = '', fy = ''] = y;
  const mx = magnitude(ix, fx);
  const my = magnitude(iy, fy);
  // A zero compares as zero whatever its sign ('-0.00' = '0').
  const negX = sx === '-' && mx.some;
  const negY = sy === '-' && my.some;
  if (negX !== negY) return negX ? -1 : 1;
  const byMagnitude = compareMagnitudes(mx, my);
  return negX ? -byMagnitude : byMagnitude;
}

function magnitude(int: string, frac: string): { int: string; frac: string; some: boolean } {
  let i = 0;
  while (i < int.length - 1 && int[i] === '0') i++;
  let f = frac.length;
  while (f > 0 && frac[f - 1] === '0') f--;
  const digits = int.slice(i);
  const fraction = frac.slice(0, f);
  return { int: digits, frac: fraction, some: digits !== '0' || fraction.length > 0 };
}

function compareMagnitudes(a: { int: string; frac: string }, b: { int: string; frac: string }): number {
  if (a.int.length !== b.int.length) return a.int.length < b.int.length ? -1 : 1;
  if (a.int !== b.int) return a.int < b.int ? -1 : 1;
  // Trailing zeros are gone: the shorter fraction that is a prefix of the other is the smaller.
  if (a.frac === b.frac) return 0;
  return a.frac < b.frac ? -1 : 1;
}

/**
 * Total order of keys. Numbers, bigints and decimal text compare by exact value; text by code
 * point (PostgreSQL's COLLATE "C"). Equal values of different forms ('1.0', '1.00', 1) are
 * ordered by their key so the order stays total.
 */
export function compareKeys(a: ValueKey, b: ValueKey): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) {
    const byValue =
      a[0] === 'n' && b[0] === 'n'
        ? Math.sign(Number(a.slice(2)) - Number(b.slice(2)))
        : ((a[0] === 'd' && b[0] === 'd' ? comparePlainDecimals(a.slice(2), b.slice(2)) : undefined) ?? compare(numericOf(a), numericOf(b)));
    if (byValue !== 0) return byValue;
  }
  return codePointCompare(a, b);
}

/** One key per SQL-equal value (count distinct): 1, 1n and '1.00' are one number. */
export function equalityKey(key: ValueKey): ValueKey {
  if (rank(key) !== 1) return key;
  return `d:${toDecimalString(normalize(numericOf(key)))}`;
}
