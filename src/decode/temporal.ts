/**
 * Debezium's integer temporal encodings to ISO-8601 text, with integer math only: no Date objects
 * (their range ends at ±275760 years and they allocate), no floating point division results used
 * unchecked.
 *
 * Precision rule: the fraction always has the digits of the source type, zeros included
 * (ms: 3, µs: 6, ns: 9), e.g. MicroTime 0 -> '00:00:00.000000'. Output width then depends only on the
 * column type, which keeps values of one column comparable as strings, and never drops the
 * precision the schema declared.
 */

export interface TimeUnit {
  /** Units per second: 1e3, 1e6 or 1e9. */
  readonly perSecond: number;
  readonly perSecondBig: bigint;
  /** Fraction digits printed. */
  readonly digits: number;
}

export const MILLIS: TimeUnit = { perSecond: 1e3, perSecondBig: 1000n, digits: 3 };
export const MICROS: TimeUnit = { perSecond: 1e6, perSecondBig: 1000000n, digits: 6 };
export const NANOS: TimeUnit = { perSecond: 1e9, perSecondBig: 1000000000n, digits: 9 };

const SECONDS_PER_DAY = 86400;

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

/**
 * Years 0000-9999 print as four digits; others as ECMAScript's expanded years (sign and six digits,
 * '+010000', '-000001' for 2 BC: astronomical numbering, year 0 is 1 BC), which Date.parse accepts.
 */
function formatYear(y: number): string {
  if (y >= 0 && y <= 9999) return `${y}`.padStart(4, '0');
  return `${y < 0 ? '-' : '+'}${`${Math.abs(y)}`.padStart(6, '0')}`;
}

/** 'YYYY-MM-DD' of a day count since 1970-01-01 (proleptic Gregorian calendar). */
export function formatDate(days: number): string {
  // Shift to an era-based count starting 0000-03-01 so that leap days fall at the end of a year.
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const dayOfEra = z - era * 146097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36524) - Math.floor(dayOfEra / 146096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1;
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  return `${formatYear(year)}-${pad2(month)}-${pad2(day)}`;
}

function formatFraction(frac: number, unit: TimeUnit): string {
  return `${frac}`.padStart(unit.digits, '0');
}

function formatClock(secondOfDay: number): string {
  const h = Math.floor(secondOfDay / 3600);
  const rest = secondOfDay - h * 3600;
  const m = Math.floor(rest / 60);
  return `${pad2(h)}:${pad2(m)}:${pad2(rest - m * 60)}`;
}

/** Splits a safe integer count of units into whole seconds (floored) and a non-negative fraction. */
function splitSeconds(units: number, unit: TimeUnit): [number, number] {
  let secs = Math.floor(units / unit.perSecond);
  let frac = units - secs * unit.perSecond;
  // The quotient is a double: near 2^53 it can round across an integer. Products below are exact.
  if (frac < 0) {
    secs -= 1;
    frac += unit.perSecond;
  } else if (frac >= unit.perSecond) {
    secs += 1;
    frac -= unit.perSecond;
  }
  return [secs, frac];
}

/**
 * 'HH:MM:SS.fff' of a time since midnight. Hours are not wrapped and a negative value keeps its
 * sign: MySQL TIME is a duration (-838:59:59 to 838:59:59) and PostgreSQL allows '24:00:00'.
 */
export function formatTimeOfDay(units: number, unit: TimeUnit): string {
  const negative = units < 0;
  const [secs, frac] = splitSeconds(Math.abs(units), unit);
  return `${negative ? '-' : ''}${formatClock(secs)}.${formatFraction(frac, unit)}`;
}

function formatEpoch(days: number, secondOfDay: number, frac: number, unit: TimeUnit): string {
  return `${formatDate(days)}T${formatClock(secondOfDay)}.${formatFraction(frac, unit)}`;
}

/** 'YYYY-MM-DDTHH:MM:SS.fff' (no zone) of a safe integer count of units since the epoch. */
export function formatTimestamp(units: number, unit: TimeUnit): string {
  const [secs, frac] = splitSeconds(units, unit);
  const days = Math.floor(secs / SECONDS_PER_DAY);
  return formatEpoch(days, secs - days * SECONDS_PER_DAY, frac, unit);
}

/** Same as formatTimestamp for counts beyond 2^53 (nanoseconds since 1970-04-15 are). */
export function formatTimestampBig(units: bigint, unit: TimeUnit): string {
  let secs = units / unit.perSecondBig;
  let frac = units % unit.perSecondBig;
  if (frac < 0n) {
    secs -= 1n;
    frac += unit.perSecondBig;
  }
  let days = secs / 86400n;
  let secondOfDay = secs % 86400n;
  if (secondOfDay < 0n) {
    days -= 1n;
    secondOfDay += 86400n;
  }
  return formatEpoch(Number(days), Number(secondOfDay), Number(frac), unit);
}
