import { ViewInputError, describeType } from './errors.ts';

/*
 * Exact decimals as a bigint mantissa and a decimal scale. Hand-written: no decimal library is a
 * dependency, and sums, squares and PostgreSQL's numeric division need only these few operations.
 */

/** The value m / 10^s. The scale is never negative; it is also the display scale (trailing zeros kept). */
export interface Decimal {
  readonly m: bigint;
  readonly s: number;
}

export const ZERO: Decimal = { m: 0n, s: 0 };

/** Larger exponents would build numbers of millions of digits; PostgreSQL numeric stops far below. */
const MAX_EXPONENT = 16_383;
const NUMBER_TEXT = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

const POW10: bigint[] = [];
export function pow10(n: number): bigint {
  if (n < 64) return (POW10[n] ??= 10n ** BigInt(n));
  return 10n ** BigInt(n);
}

/** Exact decimal of numeric text ('-12.340', '1e-7', '1.5e+21'); undefined when it is not one. */
export function parseDecimal(text: string): Decimal | undefined {
  return plainDecimal(text) ?? generalDecimal(text);
}

/**
 * The common case by hand, three times faster than the regular expression and BigInt of text: an
 * optional '-', at most 15 digits and at most one '.', which a double holds exactly.
 */
function plainDecimal(text: string): Decimal | undefined {
  const n = text.length;
  let i = text.charCodeAt(0) === 45 ? 1 : 0;
  const negative = i === 1;
  let m = 0;
  let s = -1;
  let digits = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (s >= 0) return undefined;
      s = 0;
      continue;
    }
    if (c < 48 || c > 57) return undefined;
    m = m * 10 + (c - 48);
    digits++;
    if (s >= 0) s++;
  }
  if (digits === 0 || digits > 15) return undefined;
  return { m: BigInt(negative ? -m : m), s: s < 0 ? 0 : s };
}

function generalDecimal(text: string): Decimal | undefined {
  const match = NUMBER_TEXT.exec(text);
  if (!match) return undefined;
  const [, sign, whole = '', fraction = '', exponent] = match;
  if (whole.length + fraction.length === 0) return undefined;
  const exp = exponent === undefined ? 0 : Number(exponent);
  if (Math.abs(exp) > MAX_EXPONENT) return undefined;
  let m = BigInt(`${whole}${fraction}` || '0');
  let s = fraction.length - exp;
  if (s < 0) {
    m *= pow10(-s);
    s = 0;
  }
  return { m: sign === '-' ? -m : m, s };
}

/**
 * A finite number's decimal, read from its shortest round-trip text (0.1 is 0.1, not the binary
 * fraction a double holds): what the user wrote and what PostgreSQL prints.
 */
export function decimalFromNumber(n: number): Decimal | undefined {
  if (!Number.isFinite(n)) return undefined;
  if (Number.isSafeInteger(n)) return { m: BigInt(n), s: 0 };
  return parseDecimal(`${n}`);
}

/**
 * The exact decimal of a decoded column value: a finite number, a bigint (int64 beyond 2^53) or
 * decimal text (Connect Decimal, VariableScaleDecimal). Booleans, NaN, infinities, other text and
 * objects are refused with VIEW_NOT_NUMERIC, naming `what` (e.g. 'sum').
 */
export function toDecimal(value: unknown, what: string): Decimal {
  let d: Decimal | undefined;
  if (typeof value === 'number') d = decimalFromNumber(value);
  else if (typeof value === 'bigint') d = { m: value, s: 0 };
  else if (typeof value === 'string') d = parseDecimal(value);
  if (d) return d;
  const shown = typeof value === 'string' || typeof value === 'number' ? ` ${JSON.stringify(String(value)).slice(0, 60)}` : '';
  throw new ViewInputError(
    'VIEW_NOT_NUMERIC',
    `${what} needs a number, a bigint or decimal text, got ${describeType(value)}${shown}`,
  );
}

/** The same value at a larger scale (exact), or at a smaller one when only zeros are dropped. */
export function rescale(d: Decimal, s: number): Decimal {
  if (s === d.s) return d;
  if (s > d.s) return { m: d.m * pow10(s - d.s), s };
  const f = pow10(d.s - s);
  if (d.m % f !== 0n) throw new RangeError(`rescale of ${toDecimalString(d)} to scale ${s} would round`);
  return { m: d.m / f, s };
}

function aligned(a: Decimal, b: Decimal): [bigint, bigint, number] {
  const s = Math.max(a.s, b.s);
  return [rescale(a, s).m, rescale(b, s).m, s];
}

export function add(a: Decimal, b: Decimal): Decimal {
  const [x, y, s] = aligned(a, b);
  return { m: x + y, s };
}

export function sub(a: Decimal, b: Decimal): Decimal {
  const [x, y, s] = aligned(a, b);
  return { m: x - y, s };
}

export function mul(a: Decimal, b: Decimal): Decimal {
  return { m: a.m * b.m, s: a.s + b.s };
}

export function compare(a: Decimal, b: Decimal): -1 | 0 | 1 {
  const [x, y] = aligned(a, b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export function isZero(d: Decimal): boolean {
  return d.m === 0n;
}

/** Without trailing fraction zeros: '1.500' and '1.5' get one form (for equality keys). */
export function normalize(d: Decimal): Decimal {
  let { m, s } = d;
  if (m === 0n) return ZERO;
  while (s > 0 && m % 10n === 0n) {
    m /= 10n;
    s -= 1;
  }
  return { m, s };
}

/** Canonical text with exactly `d.s` fraction digits: '3.305', '-0.10', '42'. Parses back to `d`. */
export function toDecimalString(d: Decimal): string {
  const negative = d.m < 0n;
  const digits = (negative ? -d.m : d.m).toString();
  if (d.s === 0) return negative ? `-${digits}` : digits;
  const padded = digits.padStart(d.s + 1, '0');
  const point = padded.length - d.s;
  return `${negative ? '-' : ''}${padded.slice(0, point)}.${padded.slice(point)}`;
}

/** The nearest double (one correctly rounded conversion of the exact text). */
export function toNumber(d: Decimal): number {
  return Number(toDecimalString(d));
}

/** Serialized form for state stored as JSON. */
export function serializeDecimal(d: Decimal): string {
  return toDecimalString(d);
}

export function deserializeDecimal(text: string): Decimal {
  const d = parseDecimal(text);
  if (!d) throw new RangeError(`not serialized decimal text: ${JSON.stringify(text)}`);
  return d;
}

/** Rounds |num| / |den| to an integer, half away from zero, with the quotient's sign. */
function divRound(num: bigint, den: bigint): bigint {
  const negative = num < 0n !== den < 0n;
  const n = num < 0n ? -num : num;
  const d = den < 0n ? -den : den;
  let q = n / d;
  if ((n % d) * 2n >= d) q += 1n;
  return negative ? -q : q;
}

/** a / b at `scale` fraction digits, rounded half away from zero (PostgreSQL numeric's rounding). */
export function divide(a: Decimal, b: Decimal, scale: number): Decimal {
  if (b.m === 0n) throw new RangeError('division by zero');
  // a.m / 10^a.s / (b.m / 10^b.s) * 10^scale = a.m * 10^(scale + b.s - a.s) / b.m
  const shift = scale + b.s - a.s;
  const num = shift >= 0 ? a.m * pow10(shift) : a.m;
  const den = shift >= 0 ? b.m : b.m * pow10(-shift);
  return { m: divRound(num, den), s: scale };
}

/** floor(sqrt(n)) for n >= 0. */
function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  const estimate = Number(n);
  let x = Number.isFinite(estimate)
    ? BigInt(Math.ceil(Math.sqrt(estimate))) + 1n
    : 1n << BigInt(Math.ceil(n.toString(2).length / 2));
  // One Newton step from any positive start lands at or above the root; from there it only falls.
  x = (x + n / x) >> 1n;
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

/** sqrt(d) at `scale` fraction digits, rounded half up; d must not be negative. */
export function sqrt(d: Decimal, scale: number): Decimal {
  if (d.m < 0n) throw new RangeError(`square root of negative ${toDecimalString(d)}`);
  // sqrt(d) * 10^scale = sqrt(p / q) with p, q integers.
  const shift = 2 * scale - d.s;
  const p = shift >= 0 ? d.m * pow10(shift) : d.m;
  const q = shift >= 0 ? 1n : pow10(-shift);
  const r = isqrt(p / q);
  // Round up when sqrt(p/q) >= r + 1/2, i.e. 4p >= (2r+1)^2 q.
  const up = 4n * p >= (2n * r + 1n) * (2n * r + 1n) * q;
  return { m: up ? r + 1n : r, s: scale };
}

/** Significant digits kept before the one rounding to a double (doubles need at most 17). */
const DOUBLE_DIGITS = 40;

/** a / b as the nearest double, from a quotient with far more digits than a double holds. */
export function divideToNumber(a: Decimal, b: Decimal): number {
  if (a.m === 0n) return 0;
  const magnitude = digitCount(a) - a.s - (digitCount(b) - b.s);
  const scale = Math.max(0, DOUBLE_DIGITS - magnitude);
  return toNumber(divide(a, b, scale));
}

function digitCount(d: Decimal): number {
  return (d.m < 0n ? -d.m : d.m).toString().length;
}

/**
 * Weight and first digit of |d| in PostgreSQL numeric's base-10000 representation: |d| =
 * firstDigit * 10000^weight + (smaller digits). Zero has weight 0 and first digit 0.
 */
function base10000Lead(d: Decimal): [number, number] {
  if (d.m === 0n) return [0, 0];
  const abs = d.m < 0n ? -d.m : d.m;
  const exponent10 = abs.toString().length - 1 - d.s; // |d| = x.yyy * 10^exponent10
  const weight = Math.floor(exponent10 / 4);
  const shift = d.s + 4 * weight; // firstDigit = floor(abs / 10^shift)
  const first = shift >= 0 ? abs / pow10(shift) : abs * pow10(-shift);
  return [weight, Number(first)];
}

/**
 * The result scale PostgreSQL's numeric division picks (select_div_scale in numeric.c): at least
 * 16 significant digits, and never fewer fraction digits than either operand shows. Used so that
 * avg and variance over numeric and integer columns print what PostgreSQL prints.
 */
export function postgresDivisionScale(a: Decimal, b: Decimal): number {
  const [weight1, first1] = base10000Lead(a);
  const [weight2, first2] = base10000Lead(b);
  let qweight = weight1 - weight2;
  if (first1 <= first2) qweight -= 1;
  const rscale = Math.max(16 - qweight * 4, a.s, b.s, 0);
  return Math.min(rscale, 1000);
}
