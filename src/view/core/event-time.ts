import { ViewInputError, describeType } from './errors.ts';

/**
 * Event times from decoded column values, as epoch milliseconds (floored: 1.9999 ms is 1 ms,
 * -0.5 ms is -1 ms). The decoder (src/decode/temporal.ts) produces:
 * - Date: 'YYYY-MM-DD' (years outside 0000-9999 as '+010000' / '-000001');
 * - Timestamp, MicroTimestamp, NanoTimestamp: 'YYYY-MM-DDTHH:MM:SS.fff[fff[fff]]', no zone (UTC);
 * - ZonedTimestamp (passed through from Debezium): ISO-8601 with 'Z' or an offset ('+05:30');
 * - plain int64 and int32 columns and `source.ts_ms`: numbers (or bigints beyond 2^53), read as
 *   epoch milliseconds unless another unit is given.
 */

export type EpochUnit = 'ms' | 's' | 'us' | 'ns';

/** Units per millisecond of the sub-second units. */
const PER_MS: Record<Exclude<EpochUnit, 's'>, bigint> = { ms: 1n, us: 1000n, ns: 1_000_000n };

const ISO =
  /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?)?$/;

const MS_PER_DAY = 86_400_000;

/** Days since 1970-01-01 of a proleptic Gregorian date (inverse of temporal.ts formatDate). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const shiftedMonth = month > 2 ? month - 3 : month + 9;
  const dayOfYear = Math.floor((153 * shiftedMonth + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Offset text ('Z', '+05:30', '-0800', '+01', '+01:02:03') in milliseconds east of UTC. */
function offsetMs(zone: string | undefined): number | undefined {
  if (zone === undefined || zone === 'Z') return 0;
  const digits = zone.slice(1).replace(/:/g, '');
  const h = Number(digits.slice(0, 2));
  const m = Number(digits.slice(2, 4) || '0');
  const s = Number(digits.slice(4, 6) || '0');
  if (h > 18 || m > 59 || s > 59) return undefined;
  const ms = ((h * 60 + m) * 60 + s) * 1000;
  return zone[0] === '-' ? -ms : ms;
}

function parseIso(text: string): number | undefined {
  const match = ISO.exec(text);
  if (!match) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', zone] = match;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return undefined;
  const offset = offsetMs(zone);
  if (offset === undefined) return undefined;
  // The fraction is a non-negative part of the second: keeping its first 3 digits floors.
  const millis = Number(fraction.padEnd(3, '0').slice(0, 3));
  const ms = daysFromCivil(year, month, day) * MS_PER_DAY + ((Number(h) * 60 + Number(mi)) * 60 + Number(s)) * 1000 + millis - offset;
  return Number.isSafeInteger(ms) ? ms : undefined;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return (a % b !== 0n) && (a < 0n) !== (b < 0n) ? q - 1n : q;
}

function fromEpochNumber(value: number | bigint, unit: EpochUnit): number | undefined {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return undefined;
    // A quotient of integers below 2^53 is never rounded across an integer, so floor is exact.
    ms = Math.floor(unit === 's' ? value * 1000 : value / Number(PER_MS[unit]));
  } else {
    ms = Number(unit === 's' ? value * 1000n : floorDiv(value, PER_MS[unit]));
  }
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/**
 * The epoch milliseconds of a decoded temporal value, or undefined when it is not one (null, text
 * that is no ISO date or timestamp, a boolean…). `epochUnit` says what a plain number counts.
 */
export function eventTimeMs(value: unknown, epochUnit: EpochUnit = 'ms'): number | undefined {
  if (typeof value === 'string') return parseIso(value);
  if (typeof value === 'number' || typeof value === 'bigint') return fromEpochNumber(value, epochUnit);
  if (value instanceof Date) {
    const ms = value.getTime();
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/** eventTimeMs, or VIEW_NOT_A_TIME naming the column and what it held. */
export function requireEventTimeMs(value: unknown, column: string, epochUnit: EpochUnit = 'ms'): number {
  const ms = eventTimeMs(value, epochUnit);
  if (ms !== undefined) return ms;
  const shown = typeof value === 'string' || typeof value === 'number' ? ` ${JSON.stringify(value).slice(0, 60)}` : '';
  throw new ViewInputError(
    'VIEW_NOT_A_TIME',
    `event time column ${column} needs an ISO date or timestamp or epoch ${epochUnit}, got ${describeType(value)}${shown}`,
  );
}
