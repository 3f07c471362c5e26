/**
 * Avro binary to JSON text, byte to byte: the readers avro-schema.ts composes per schema write
 * JsonConverter's payload form into one reused output buffer, without building JS values or
 * strings in between (a string column's UTF-8 bytes are copied, escaped where JSON needs it).
 *
 * Value forms: bytes and fixed as base64 strings; longs exact, beyond 2^53 as quoted digits (JSON
 * numbers that large would be rounded by JSON.parse); floats as the shortest decimal that reads
 * back as the same float32 (what Java's Float.toString, and so JsonConverter, prints); NaN and the
 * infinities as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers, PostgreSQL
 * reads these strings into real and double precision).
 *
 * Every read checks the input bounds; a body that is not what the schema says fails with
 * AvroBodyProblem, never with an out-of-range read.
 */

/** The Avro body is not what the schema says (truncated, a bad union index, enum index or boolean). */
export class AvroBodyProblem extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AvroBodyProblem';
  }
}

/** The input and the output of one transcoding. */
export interface Io {
  src: Buffer;
  pos: number;
  out: Buffer;
  len: number;
}

/** Writes the JSON text of one value read from `io.src` at `io.pos` into `io.out`. */
export type Reader = (io: Io) => void;

const INITIAL_OUTPUT = 64 * 1024;
/** An output grown past this by a huge record is dropped after it, not kept for every later one. */
const KEPT_OUTPUT = 1024 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const HEX = '0123456789abcdef';
const B64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'latin1');
/** Above this many bytes Node's native base64 is faster than the loop. */
const NATIVE_BASE64_FROM = 256;

function truncated(): AvroBodyProblem {
  return new AvroBodyProblem('the Avro body ends early (truncated, or not written with this schema)');
}

function reserve(io: Io, n: number): void {
  if (io.len + n <= io.out.length) return;
  const bigger = Buffer.allocUnsafe(Math.max(io.out.length * 2, io.len + n));
  io.out.copy(bigger, 0, 0, io.len);
  io.out = bigger;
}

/** ASCII text (digits, quotes, literals). */
function putAscii(io: Io, s: string): void {
  const n = s.length;
  reserve(io, n);
  const out = io.out;
  let len = io.len;
  for (let i = 0; i < n; i++) out[len++] = s.charCodeAt(i);
  io.len = len;
}

/** Precomputed bytes (member names with their punctuation). */
export function putBytes(io: Io, bytes: Uint8Array): void {
  const n = bytes.length;
  reserve(io, n);
  const out = io.out;
  let len = io.len;
  for (let i = 0; i < n; i++) out[len++] = bytes[i]!;
  io.len = len;
}

const NULL = Buffer.from('null', 'latin1');
const TRUE = Buffer.from('true', 'latin1');
const FALSE = Buffer.from('false', 'latin1');

function putByte(io: Io, b: number): void {
  reserve(io, 1);
  io.out[io.len++] = b;
}

/** Digits of 0 <= n < 2^31, at `len`; returns the new length. */
function putSmall(out: Buffer, len: number, n: number): number {
  let digits = 1;
  for (let t = n; t >= 10; t = (t / 10) | 0) digits++;
  let p = len + digits;
  do {
    const q = (n / 10) | 0;
    out[--p] = 0x30 + n - q * 10;
    n = q;
  } while (n > 0);
  return len + digits;
}

/** Exactly 8 digits of 0 <= n < 10^8, zero-padded. */
function putPadded8(out: Buffer, len: number, n: number): number {
  for (let p = len + 7; p >= len; p--) {
    const q = (n / 10) | 0;
    out[p] = 0x30 + n - q * 10;
    n = q;
  }
  return len + 8;
}

/** A safe integer's digits (String(n) of a large double is several times slower). */
function putInteger(io: Io, n: number): void {
  reserve(io, 17);
  const out = io.out;
  let len = io.len;
  if (n < 0) {
    out[len++] = 0x2d;
    n = -n;
  }
  if (n < 1e8) {
    len = putSmall(out, len, n);
  } else {
    // n < 2^53: both halves are below 10^8.
    const high = Math.floor(n / 1e8);
    len = putPadded8(out, putSmall(out, len, high), n - high * 1e8);
  }
  io.len = len;
}

/**
 * A zigzag varint as a number when it has at most 7 bytes (|n| < 2^48, where float arithmetic is
 * exact), else undefined with the input position unmoved.
 */
function shortVarint(io: Io): number | undefined {
  const src = io.src;
  let pos = io.pos;
  let z = 0;
  let mul = 1;
  for (let i = 0; i < 7; i++) {
    const b = src[pos++];
    if (b === undefined) throw truncated();
    z += (b & 0x7f) * mul;
    if (b < 0x80) {
      io.pos = pos;
      return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    mul *= 128;
  }
  return undefined;
}

/**
 * A varint of 8 to 10 bytes, written exactly: as a number up to 2^53, beyond as quoted digits. The
 * zigzag value is high * 2^49 + low; its magnitude m = H * 2^48 + L is printed in base-10^8 limbs
 * with float arithmetic that stays below 2^53 (2^48 = 2814749 * 10^8 + 76710656), no BigInt.
 */
function putWideVarint(io: Io): void {
  const src = io.src;
  let pos = io.pos;
  let low = 0;
  let mul = 1;
  for (let i = 0; i < 7; i++) {
    low += (src[pos++]! & 0x7f) * mul;
    mul *= 128;
  }
  let high = 0;
  mul = 1;
  for (let i = 7; ; i++) {
    const b = src[pos++];
    if (b === undefined) throw truncated();
    high += (b & 0x7f) * mul;
    if (b < 0x80) break;
    if (i === 9) throw new AvroBodyProblem('a long of more than 10 bytes');
    mul *= 128;
  }
  if (high >= 2 ** 15) throw new AvroBodyProblem('a long beyond 64 bits');
  io.pos = pos;
  // low's last bit is the zigzag sign: m = z / 2, or (z + 1) / 2 for negatives.
  const negative = low % 2 === 1;
  const L = negative ? (low + 1) / 2 : low / 2;
  const safe = high * 2 ** 48 + L;
  if (high < 32 && safe <= Number.MAX_SAFE_INTEGER) {
    putInteger(io, negative ? -safe : safe);
    return;
  }
  let a = high * 2814749;
  let b = high * 76710656 + L;
  const carry = Math.floor(b / 1e8);
  b -= carry * 1e8;
  a += carry;
  const a1 = Math.floor(a / 1e8);
  const a0 = a - a1 * 1e8;
  reserve(io, 24);
  const out = io.out;
  let len = io.len;
  out[len++] = QUOTE;
  if (negative) out[len++] = 0x2d;
  len = a1 > 0 ? putPadded8(out, putSmall(out, len, a1), a0) : putSmall(out, len, a0);
  len = putPadded8(out, len, b);
  out[len++] = QUOTE;
  io.len = len;
}

/** Block counts, lengths, union and enum indexes: small by nature, anything longer is corruption. */
export function readCount(io: Io): number {
  const n = shortVarint(io);
  if (n === undefined) throw new AvroBodyProblem('a count, length or index beyond 2^48');
  return n;
}

function readLength(io: Io): number {
  const n = readCount(io);
  if (n < 0) throw new AvroBodyProblem(`a negative length ${n}`);
  if (io.pos + n > io.src.length) throw truncated();
  return n;
}

export const readNull: Reader = (io) => putBytes(io, NULL);

export const readBoolean: Reader = (io) => {
  const b = io.src[io.pos];
  if (b !== 0 && b !== 1) throw b === undefined ? truncated() : new AvroBodyProblem(`a boolean byte ${b}`);
  io.pos++;
  putBytes(io, b === 1 ? TRUE : FALSE);
};

export const readInt: Reader = (io) => {
  const n = shortVarint(io);
  if (n === undefined || n < -2147483648 || n > 2147483647) throw new AvroBodyProblem('an int beyond 32 bits');
  putInteger(io, n);
};

export const readLong: Reader = (io) => {
  const n = shortVarint(io);
  if (n !== undefined) putInteger(io, n);
  else putWideVarint(io);
};

function nonFinite(v: number): string {
  return Number.isNaN(v) ? '"NaN"' : v > 0 ? '"Infinity"' : '"-Infinity"';
}

export const readFloat: Reader = (io) => {
  if (io.pos + 4 > io.src.length) throw truncated();
  const v = io.src.readFloatLE(io.pos);
  io.pos += 4;
  if (!Number.isFinite(v)) return putAscii(io, nonFinite(v));
  for (let digits = 1; digits < 9; digits++) {
    const shorter = Number(v.toPrecision(digits));
    if (Math.fround(shorter) === v) return putAscii(io, String(shorter));
  }
  putAscii(io, String(v));
};

export const readDouble: Reader = (io) => {
  if (io.pos + 8 > io.src.length) throw truncated();
  const v = io.src.readDoubleLE(io.pos);
  io.pos += 8;
  putAscii(io, Number.isFinite(v) ? String(v) : nonFinite(v));
};

/** `"`, `\\` and control characters, escaped; JSON allows every other byte of UTF-8 text as is. */
function needsEscape(b: number): boolean {
  return b < 0x20 || b === QUOTE || b === BACKSLASH;
}

function putEscaped(out: Buffer, len: number, b: number): number {
  out[len++] = BACKSLASH;
  switch (b) {
    case QUOTE:
    case BACKSLASH:
      out[len++] = b;
      return len;
    case 0x0a:
      out[len++] = 0x6e; // \n
      return len;
    case 0x0d:
      out[len++] = 0x72; // \r
      return len;
    case 0x09:
      out[len++] = 0x74; // \t
      return len;
    default:
      out[len++] = 0x75; // \u00XX
      out[len++] = 0x30;
      out[len++] = 0x30;
      out[len++] = HEX.charCodeAt(b >> 4);
      out[len++] = HEX.charCodeAt(b & 15);
      return len;
  }
}

/** Above this many bytes a string without escapes is copied natively. */
const NATIVE_COPY_FROM = 64;

/** A string's UTF-8 bytes, quoted, escaped where JSON needs it (copied, never decoded). */
export const readString: Reader = (io) => {
  const n = readLength(io);
  const src = io.src;
  const start = io.pos;
  const end = start + n;
  io.pos = end;
  let escapes = 0;
  for (let i = start; i < end; i++) if (needsEscape(src[i]!)) escapes++;
  reserve(io, n + 5 * escapes + 2);
  const out = io.out;
  let len = io.len;
  out[len++] = QUOTE;
  if (escapes === 0 && n > NATIVE_COPY_FROM) {
    len += src.copy(out, len, start, end);
  } else {
    for (let i = start; i < end; i++) {
      const b = src[i]!;
      if (escapes === 0 || !needsEscape(b)) out[len++] = b;
      else len = putEscaped(out, len, b);
    }
  }
  out[len++] = QUOTE;
  io.len = len;
};

function putBase64(io: Io, start: number, end: number): void {
  const n = end - start;
  const src = io.src;
  if (n > NATIVE_BASE64_FROM) {
    const text = src.toString('base64', start, end);
    reserve(io, text.length + 2);
    io.out[io.len++] = QUOTE;
    io.len += io.out.write(text, io.len, 'latin1');
    io.out[io.len++] = QUOTE;
    return;
  }
  reserve(io, 4 * Math.ceil(n / 3) + 2);
  const out = io.out;
  let len = io.len;
  out[len++] = QUOTE;
  let i = start;
  for (; i + 2 < end; i += 3) {
    const v = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
    out[len++] = B64[v >> 18]!;
    out[len++] = B64[(v >> 12) & 63]!;
    out[len++] = B64[(v >> 6) & 63]!;
    out[len++] = B64[v & 63]!;
  }
  if (i < end) {
    const two = i + 1 < end;
    const v = (src[i]! << 16) | (two ? src[i + 1]! << 8 : 0);
    out[len++] = B64[v >> 18]!;
    out[len++] = B64[(v >> 12) & 63]!;
    out[len++] = two ? B64[(v >> 6) & 63]! : 0x3d;
    out[len++] = 0x3d;
  }
  out[len++] = QUOTE;
  io.len = len;
}

export const readBytes: Reader = (io) => {
  const n = readLength(io);
  const start = io.pos;
  io.pos += n;
  putBase64(io, start, io.pos);
};

export function readFixed(size: number): Reader {
  return (io) => {
    const start = io.pos;
    if (start + size > io.src.length) throw truncated();
    io.pos += size;
    putBase64(io, start, io.pos);
  };
}

export function readEnum(symbols: readonly string[]): Reader {
  const texts = symbols.map((s) => Buffer.from(JSON.stringify(s), 'utf8'));
  return (io) => {
    const i = readCount(io);
    const text = texts[i];
    if (text === undefined) throw new AvroBodyProblem(`enum index ${i} of ${texts.length} symbols`);
    putBytes(io, text);
  };
}

/** Primitive kinds a record reads inline, without a call through a reader (most columns). */
export const KIND = { other: 0, boolean: 1, int: 2, long: 3, float: 4, double: 5, string: 6, bytes: 7 } as const;
export type Kind = (typeof KIND)[keyof typeof KIND];

/** How a record reads a field. */
export interface FieldPlan {
  readonly name: string;
  /** A primitive, or KIND.other: then `read` reads the field, whatever it is (unions included). */
  readonly kind: Kind;
  /** For a primitive in a union with null (`["null", T]`, `[T, "null"]`): null's branch index, else -1. */
  readonly nullIndex: number;
  readonly read: Reader;
}

function readKind(io: Io, kind: Kind, read: Reader): void {
  switch (kind) {
    case KIND.long: {
      const n = shortVarint(io);
      if (n !== undefined) putInteger(io, n);
      else putWideVarint(io);
      return;
    }
    case KIND.string:
      return readString(io);
    case KIND.int:
      return readInt(io);
    case KIND.bytes:
      return readBytes(io);
    case KIND.boolean:
      return readBoolean(io);
    case KIND.double:
      return readDouble(io);
    case KIND.float:
      return readFloat(io);
    default:
      return read(io);
  }
}

/**
 * `{"a":…,"b":…}` in schema order. Primitive fields, optional or not, are read here by kind: the
 * calls through each field's own reader closure are what costs most otherwise.
 */
export function readRecord(fields: readonly FieldPlan[]): Reader {
  if (fields.length === 0) return (io) => putAscii(io, '{}');
  const heads = fields.map((f, i) => Buffer.from(`${i === 0 ? '{' : ','}${JSON.stringify(f.name)}:`, 'utf8'));
  const kinds = fields.map((f) => f.kind);
  const nulls = fields.map((f) => (f.kind === KIND.other ? -1 : f.nullIndex));
  const readers = fields.map((f) => f.read);
  const n = heads.length;
  return (io) => {
    for (let i = 0; i < n; i++) {
      putBytes(io, heads[i]!);
      const nullIndex = nulls[i]!;
      if (nullIndex >= 0) {
        const branch = readCount(io);
        if (branch === nullIndex) {
          putBytes(io, NULL);
          continue;
        }
        if (branch !== 1 - nullIndex) throw new AvroBodyProblem(`union branch ${branch} of 2`);
      }
      readKind(io, kinds[i]!, readers[i]!);
    }
    putByte(io, 0x7d);
  };
}

/** `[key,value]`: a map entry of a map whose keys are not strings, as JsonConverter writes it. */
export function readPair(key: FieldPlan, value: FieldPlan): Reader {
  const plans = [key, value];
  return (io) => {
    putByte(io, 0x5b);
    for (let i = 0; i < 2; i++) {
      if (i === 1) putByte(io, 0x2c);
      const plan = plans[i]!;
      if (plan.kind !== KIND.other && plan.nullIndex >= 0) {
        const branch = readCount(io);
        if (branch === plan.nullIndex) {
          putBytes(io, NULL);
          continue;
        }
        if (branch !== 1 - plan.nullIndex) throw new AvroBodyProblem(`union branch ${branch} of 2`);
      }
      readKind(io, plan.kind, plan.read);
    }
    putByte(io, 0x5d);
  };
}

/**
 * Array and map blocks: a count, that many items, …, a count of 0; a negative count is followed by
 * the block's byte size. Items of at least one byte cannot outnumber the bytes left.
 */
function readBlocks(io: Io, minItemBytes: number, item: (io: Io, first: boolean) => void): void {
  let first = true;
  for (;;) {
    let n = readCount(io);
    if (n === 0) return;
    if (n < 0) {
      n = -n;
      readCount(io);
    }
    const left = io.src.length - io.pos;
    if (minItemBytes > 0 ? n * minItemBytes > left : n > 1_000_000) {
      throw new AvroBodyProblem(`a block of ${n} items in the ${left} bytes left`);
    }
    for (let i = 0; i < n; i++) {
      item(io, first);
      first = false;
    }
  }
}

export function readArray(items: Reader, minItemBytes: number): Reader {
  const item = (io: Io, first: boolean) => {
    if (!first) putByte(io, 0x2c);
    items(io);
  };
  return (io) => {
    putByte(io, 0x5b);
    readBlocks(io, minItemBytes, item);
    putByte(io, 0x5d);
  };
}

export function readMap(values: Reader): Reader {
  const entry = (io: Io, first: boolean) => {
    if (!first) putByte(io, 0x2c);
    readString(io);
    putByte(io, 0x3a);
    values(io);
  };
  return (io) => {
    putByte(io, 0x7b);
    readBlocks(io, 1, entry);
    putByte(io, 0x7d);
  };
}

export function readUnion(branches: readonly Reader[]): Reader {
  return (io) => {
    const i = readCount(io);
    const branch = branches[i];
    if (!branch) throw new AvroBodyProblem(`union branch ${i} of ${branches.length}`);
    branch(io);
  };
}

/**
 * A union of several non-null types, as Connect's AvroConverter represents it: an object with one
 * member per branch, the value in its branch's member and null in the others. `at` is the member
 * of this branch.
 */
export function readUnionMember(members: readonly string[], at: number, read: Reader): Reader {
  const heads = members.map((m, i) => Buffer.from(`${i === 0 ? '{' : ','}${JSON.stringify(m)}:`, 'utf8'));
  return (io) => {
    for (let i = 0; i < heads.length; i++) {
      putBytes(io, heads[i]!);
      if (i === at) read(io);
      else putBytes(io, NULL);
    }
    putByte(io, 0x7d);
  };
}

const EMPTY = Buffer.alloc(0);

/**
 * Results are cut from slabs, as Node's own Buffer pool does for small buffers: a framed record is
 * head (the Connect schema, often several KB) plus payload, past the size Node pools, and a fresh
 * allocation of that size per record cost more than the rest of the copy. Each result is its own
 * region, never handed out twice; a slab is freed with the last result cut from it.
 */
const SLAB_BYTES = 256 * 1024;
let slab = EMPTY;
let slabUsed = 0;

function allocate(n: number): Buffer {
  if (n > SLAB_BYTES / 8) return Buffer.allocUnsafe(n);
  if (slabUsed + n > slab.length) {
    slab = Buffer.allocUnsafe(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + n);
  // Keep regions 8-byte aligned, as Node's pool does.
  slabUsed += (n + 7) & ~7;
  return out;
}
/** One output buffer for every transcoding: JavaScript runs one at a time, and none calls out. */
const shared: Io = { src: EMPTY, pos: 0, out: Buffer.allocUnsafe(INITIAL_OUTPUT), len: 0 };

/**
 * Transcodes the Avro body at `offset` (to the end of `src`) and returns `head`, the JSON text and
 * `tail` as one new buffer. Throws AvroBodyProblem when the bytes are not such a body, trailing
 * bytes included.
 */
export function transcode(read: Reader, src: Buffer, offset: number, head: Uint8Array, tail: Uint8Array): Buffer {
  const io = shared;
  io.src = src;
  io.pos = offset;
  io.len = 0;
  try {
    read(io);
    if (io.pos !== src.length) {
      throw new AvroBodyProblem(`${src.length - io.pos} byte(s) follow the Avro body (not written with this schema)`);
    }
    const result = allocate(head.length + io.len + tail.length);
    result.set(head, 0);
    io.out.copy(result, head.length, 0, io.len);
    result.set(tail, head.length + io.len);
    return result;
  } finally {
    io.src = EMPTY;
    if (io.out.length > KEPT_OUTPUT) io.out = Buffer.allocUnsafe(INITIAL_OUTPUT);
  }
}
