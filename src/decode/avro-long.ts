import avsc from 'avsc';

/**
 * Avro `long` for avsc, exact over the whole int64 range: the long of the avsc types this project
 * builds (given to the registry client, and used by tests to encode). The decoder reads Avro with
 * its own readers (avro-json.ts), exact too.
 *
 * avsc's own long reads the varint into a double and throws 'potential precision loss' past ±2^53
 * (every NanoTimestamp after 1970-04-15, Debezium's ts_ns, large ids). This type reads and writes
 * the raw varint bytes itself (`noUnpack`): up to 7 bytes (|n| < 2^48) with float arithmetic, which
 * is exact there, longer ones through BigInt.
 *
 * Read values are a number when safe, else the decimal digits as a string: what JSON carries
 * without loss. Writes take a number, a bigint or a digit string.
 */

export type ExactLong = number | string;

const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const DIGITS = /^-?\d+$/;
/** A varint of an int64 takes at most 10 bytes. */
const MAX_VARINT_BYTES = 10;

function toBigInt(v: unknown): bigint | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? BigInt(v) : undefined;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'string' && DIGITS.test(v)) return BigInt(v);
  return undefined;
}

function isInt64(v: unknown): boolean {
  const b = toBigInt(v);
  return b !== undefined && b >= MIN_INT64 && b <= MAX_INT64;
}

function exact(b: bigint): ExactLong {
  return b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b.toString();
}

/** Decodes a zigzag varint given as its bytes (the last one without the continuation bit). */
export function readZigZagVarint(buf: Uint8Array): ExactLong {
  const n = buf.length;
  if (n <= 7) {
    let z = 0;
    let mul = 1;
    for (let i = 0; i < n; i++) {
      z += (buf[i]! & 0x7f) * mul;
      mul *= 128;
    }
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }
  if (n > MAX_VARINT_BYTES) throw new RangeError(`a long takes at most ${MAX_VARINT_BYTES} bytes, this one ${n}`);
  let z = 0n;
  let shift = 0n;
  for (let i = 0; i < n; i++) {
    z |= BigInt(buf[i]! & 0x7f) << shift;
    shift += 7n;
  }
  if (z >= 2n ** 64n) throw new RangeError('a long beyond 64 bits');
  return exact((z & 1n) === 0n ? z >> 1n : -((z + 1n) >> 1n));
}

/** The zigzag varint bytes of an int64 (number, bigint or digit string). */
export function writeZigZagVarint(v: unknown): Buffer {
  const b = toBigInt(v);
  if (b === undefined || b < MIN_INT64 || b > MAX_INT64) throw new RangeError(`not an int64: ${String(v)}`);
  let z = b >= 0n ? b << 1n : (-b << 1n) - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return Buffer.from(out);
}

function compare(a: unknown, b: unknown): number {
  const x = toBigInt(a) ?? 0n;
  const y = toBigInt(b) ?? 0n;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The one exact long type; avsc types are immutable, so it is shared by every schema. */
export const EXACT_LONG: avsc.types.LongType = avsc.types.LongType.__with(
  {
    fromBuffer: readZigZagVarint,
    toBuffer: writeZigZagVarint,
    fromJSON: (v: unknown): ExactLong => {
      const b = toBigInt(v);
      if (b === undefined) throw new TypeError(`not a long: ${String(v)}`);
      return exact(b);
    },
    toJSON: (v: unknown): ExactLong => exact(toBigInt(v) ?? 0n),
    isValid: isInt64,
    compare,
  },
  true,
);
