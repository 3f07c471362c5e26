import { describe, expect, it } from 'vitest';
import { decimalFromBytes, decimalFromNumber, decodeBase64 } from '../../src/decode/decimal.ts';
import { describeJsonError, jsonValueEnd, locateJsonError, objectMemberSpans } from '../../src/decode/json-scan.ts';
import { PLACEHOLDER_BASE64, PLACEHOLDER_UUID, isPlaceholderOfAnyType } from '../../src/decode/placeholder.ts';
import {
  MICROS,
  MILLIS,
  NANOS,
  formatDate,
  formatTimeOfDay,
  formatTimestamp,
  formatTimestampBig,
} from '../../src/decode/temporal.ts';
import { DEBEZIUM_UNAVAILABLE_PLACEHOLDER } from '../../src/model/change-event.ts';

const DAY_MS = 86_400_000;

/** Deterministic pseudo-random integers in [lo, hi). */
function* sample(count: number, lo: number, hi: number): Generator<number> {
  let x = 0x2545f491;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    yield lo + Math.floor(((x >>> 0) / 2 ** 32) * (hi - lo));
  }
}

describe('formatDate', () => {
  it('matches Date for days across and beyond years 0000-9999, in the same expanded-year format', () => {
    // Date's range: ±100,000,000 days.
    for (const days of [...sample(20_000, -100_000_000, 100_000_000), ...sample(20_000, -800_000, 3_000_000)]) {
      expect(formatDate(days), String(days)).toBe(new Date(days * DAY_MS).toISOString().slice(0, -14));
    }
  });

  it('handles the edges', () => {
    expect(formatDate(0)).toBe('1970-01-01');
    expect(formatDate(-1)).toBe('1969-12-31');
    expect(formatDate(19782)).toBe('2024-02-29');
    expect(formatDate(-719162)).toBe('0001-01-01');
    expect(formatDate(-719528)).toBe('0000-01-01');
    expect(formatDate(-719529)).toBe('-000001-12-31');
    expect(formatDate(2932896)).toBe('9999-12-31');
    expect(formatDate(2932897)).toBe('+010000-01-01');
    // int32 extremes are beyond Date but still computed.
    expect(formatDate(2 ** 31 - 1)).toBe('+5881580-07-11');
    expect(formatDate(-(2 ** 31))).toBe('-5877641-06-23');
  });
});

describe('formatTimeOfDay', () => {
  it('always prints the source precision', () => {
    expect(formatTimeOfDay(0, MILLIS)).toBe('00:00:00.000');
    expect(formatTimeOfDay(0, MICROS)).toBe('00:00:00.000000');
    expect(formatTimeOfDay(0, NANOS)).toBe('00:00:00.000000000');
    expect(formatTimeOfDay(45296789, MILLIS)).toBe('12:34:56.789');
    expect(formatTimeOfDay(45296000001, MICROS)).toBe('12:34:56.000001');
    expect(formatTimeOfDay(86399999999999, NANOS)).toBe('23:59:59.999999999');
  });

  it('keeps hours past 24 and the sign of negative durations (MySQL TIME)', () => {
    expect(formatTimeOfDay(86400000000, MICROS)).toBe('24:00:00.000000');
    expect(formatTimeOfDay(3020399000000, MICROS)).toBe('838:59:59.000000');
    expect(formatTimeOfDay(-3020399000000, MICROS)).toBe('-838:59:59.000000');
    expect(formatTimeOfDay(-1, MICROS)).toBe('-00:00:00.000001');
  });
});

describe('formatTimestamp', () => {
  it('matches Date for milliseconds, before and after 1970', () => {
    for (const ms of sample(20_000, -8.64e15, 8.64e15)) {
      const iso = new Date(ms).toISOString();
      expect(formatTimestamp(ms, MILLIS), String(ms)).toBe(iso.slice(0, -1));
    }
  });

  it('is exact for micro and nano counts, number and BigInt paths agreeing', () => {
    expect(formatTimestamp(-1, MICROS)).toBe('1969-12-31T23:59:59.999999');
    expect(formatTimestamp(1718454896123456, MICROS)).toBe('2024-06-15T12:34:56.123456');
    expect(formatTimestampBig(1718454896123456789n, NANOS)).toBe('2024-06-15T12:34:56.123456789');
    expect(formatTimestampBig(-1n, NANOS)).toBe('1969-12-31T23:59:59.999999999');
    expect(formatTimestampBig(-62135596800000000001n, NANOS)).toBe('0000-12-31T23:59:59.999999999');
    expect(formatTimestampBig(-62167219200000000001n, NANOS)).toBe('-000001-12-31T23:59:59.999999999');
    expect(formatTimestampBig(9223372036854775807n, NANOS)).toBe('2262-04-11T23:47:16.854775807');
    for (const us of sample(5_000, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)) {
      expect(formatTimestamp(us, MICROS)).toBe(formatTimestampBig(BigInt(us), MICROS));
      expect(formatTimestamp(us, NANOS)).toBe(formatTimestampBig(BigInt(us), NANOS));
    }
    // Near 2^53 the floating quotient rounds up across a second; the result must not.
    expect(formatTimestamp(8999999999999999, NANOS)).toBe(formatTimestampBig(8999999999999999n, NANOS));
  });
});

describe('decimals', () => {
  const b64 = (n: bigint): string => {
    let hex = (n < 0n ? (1n << 256n) + n : n).toString(16);
    if (hex.length % 2) hex = `0${hex}`;
    let bytes = Buffer.from(hex, 'hex');
    // Shortest two's complement form: trim sign-extension bytes, keep a sign bit.
    while (bytes.length > 1 && ((bytes[0] === 0 && !((bytes[1] ?? 0) & 0x80)) || (bytes[0] === 0xff && (bytes[1] ?? 0) & 0x80))) {
      bytes = bytes.subarray(1);
    }
    if (n >= 0n && (bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
    return bytes.toString('base64');
  };
  const dec = (text: string, scale: number) => decimalFromBytes(decodeBase64(text)!, scale);

  it('keeps the scale digits, signs and leading zeros', () => {
    expect(dec(b64(-12340n), 3)).toBe('-12.340');
    expect(dec(b64(5n), 2)).toBe('0.05');
    expect(dec(b64(-5n), 2)).toBe('-0.05');
    expect(dec(b64(0n), 3)).toBe('0.000');
    expect(dec(b64(0n), 0)).toBe('0');
    expect(dec(b64(127n), 0)).toBe('127');
    expect(dec(b64(128n), 0)).toBe('128');
    expect(dec(b64(-128n), 1)).toBe('-12.8');
    expect(dec(b64(1234n), -2)).toBe('123400');
  });

  it('is exact beyond 2^53 and at the 6/7-byte boundary', () => {
    const big = 123456789012345678901234567890123456n;
    expect(dec(b64(big), 10)).toBe('12345678901234567890123456.7890123456');
    expect(dec(b64(-big), 10)).toBe('-12345678901234567890123456.7890123456');
    for (const n of [2n ** 47n - 1n, -(2n ** 47n), 2n ** 47n, -(2n ** 47n) - 1n, 2n ** 63n, -(2n ** 127n)]) {
      expect(dec(b64(n), 0)).toBe(n.toString());
    }
  });

  it('rejects what is not canonical base64 or empty', () => {
    expect(decodeBase64('abc')).toBeUndefined();
    expect(decodeBase64('ab!=')).toBeUndefined();
    expect(decimalFromBytes(Buffer.alloc(0), 2)).toBeUndefined();
  });

  it('prints JSON-number decimals with the scale', () => {
    expect(decimalFromNumber(1.5, 3)).toBe('1.500');
    expect(decimalFromNumber(-0.001, 2)).toBe('0.00');
    expect(decimalFromNumber(42, 0)).toBe('42');
    expect(decimalFromNumber(1e21, 2)).toBe('1e+21');
  });
});

describe('placeholders', () => {
  it('has the forms Debezium sends', () => {
    expect(PLACEHOLDER_BASE64).toBe('X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==');
    // Version 3 (name-based MD5) UUID.
    expect(PLACEHOLDER_UUID).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const codes = [...Buffer.from(DEBEZIUM_UNAVAILABLE_PLACEHOLDER)];
    for (const v of [DEBEZIUM_UNAVAILABLE_PLACEHOLDER, PLACEHOLDER_BASE64, [DEBEZIUM_UNAVAILABLE_PLACEHOLDER], [PLACEHOLDER_UUID], codes, { [DEBEZIUM_UNAVAILABLE_PLACEHOLDER]: DEBEZIUM_UNAVAILABLE_PLACEHOLDER }]) {
      expect(isPlaceholderOfAnyType(v)).toBe(true);
    }
    for (const v of ['x', [], [1], codes.slice(1), { a: DEBEZIUM_UNAVAILABLE_PLACEHOLDER }, null, 5]) {
      expect(isPlaceholderOfAnyType(v)).toBe(false);
    }
  });
});

describe('json-scan', () => {
  it('locates the first syntax error', () => {
    expect(locateJsonError('{"a":[1,2,{"b":null}],"c":"x\\n"}')).toBeUndefined();
    expect(locateJsonError('{"a":}')).toEqual({ position: 5, problem: "unexpected character '}'" });
    expect(locateJsonError('{"a":1')).toEqual({ position: 6, problem: "expected ',' or '}' after a property value" });
    expect(locateJsonError('[1,2,]')).toEqual({ position: 5, problem: "unexpected character ']'" });
    expect(locateJsonError('{"a":01}')).toEqual({ position: 6, problem: "expected ',' or '}' after a property value" });
    expect(locateJsonError('"abc')).toEqual({ position: 4, problem: 'unterminated string' });
    expect(locateJsonError('"a\u0001"')).toEqual({ position: 2, problem: 'control character in string' });
    expect(locateJsonError('"\\x"')).toEqual({ position: 1, problem: 'bad escape in string' });
    expect(locateJsonError('1.')).toEqual({ position: 2, problem: 'expected a digit after the decimal point' });
    expect(locateJsonError('')).toEqual({ position: 0, problem: 'unexpected end of input' });
    expect(locateJsonError('tru')).toEqual({ position: 0, problem: "unexpected character 't'" });
    expect(describeJsonError('{} {}')).toBe('unexpected text after the JSON value at position 3');
  });

  it('agrees with JSON.parse on what is valid', () => {
    for (const t of ['0', '-0.5e+3', '"\\u00e9\\/"', '[]', '{}', ' [ { } , [ ] ] ', 'null', '1e5', '[-]', '{"a" 1}', '[1 2]', '01', '.5', '"\t"']) {
      let valid = true;
      try {
        JSON.parse(t);
      } catch {
        valid = false;
      }
      expect(locateJsonError(t) === undefined, t).toBe(valid);
    }
  });

  it('finds where a value ends and the raw spans of object members', () => {
    const t = '{"schema":{"a":"}"},"payload":{"x":12345678901234567890}}';
    expect(t.slice(10, jsonValueEnd(t, 10))).toBe('{"a":"}"}');
    expect(jsonValueEnd('{"a":', 0)).toBe(-1);
    const spans = objectMemberSpans(t)!;
    const payload = spans.get('payload')!;
    expect(t.slice(payload.start, payload.end)).toBe('{"x":12345678901234567890}');
    expect(objectMemberSpans('[1]')).toBeUndefined();
    expect([...objectMemberSpans(' { } ')!]).toEqual([]);
    expect(objectMemberSpans('{"k\\u0061":1}')!.has('ka')).toBe(true);
  });
});
