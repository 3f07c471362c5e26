/**
 * Connect's Decimal travels as the big-endian two's complement bytes of the unscaled value (base64
 * in JSON). Decoded to an exact decimal string: a double cannot hold numeric(38,10).
 */

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Undefined when `text` is not canonical base64 (Buffer.from would silently skip bad characters). */
export function decodeBase64(text: string): Buffer | undefined {
  return BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
}

/** Places the decimal point: digits '12340', scale 3 -> '12.340'; scale -2 -> '1234000'. */
function scaleDigits(negative: boolean, digits: string, scale: number): string {
  let text: string;
  if (scale <= 0) {
    text = digits === '0' ? digits : digits + '0'.repeat(-scale);
  } else {
    const padded = digits.length <= scale ? '0'.repeat(scale - digits.length + 1) + digits : digits;
    const point = padded.length - scale;
    text = `${padded.slice(0, point)}.${padded.slice(point)}`;
  }
  return negative ? `-${text}` : text;
}

/** Exact decimal text of an unscaled two's complement integer and a scale. Empty bytes -> undefined. */
export function decimalFromBytes(bytes: Buffer, scale: number): string | undefined {
  const n = bytes.length;
  if (n === 0) return undefined;
  if (n <= 6) {
    // Up to 48 bits: exact in a double, and much cheaper than a BigInt.
    const v = bytes.readIntBE(0, n);
    return scaleDigits(v < 0, `${Math.abs(v)}`, scale);
  }
  let v = BigInt(`0x${bytes.toString('hex')}`);
  if ((bytes[0] ?? 0) & 0x80) v -= 1n << BigInt(n * 8);
  const negative = v < 0n;
  return scaleDigits(negative, `${negative ? -v : v}`, scale);
}

/**
 * A Decimal sent as a JSON number (JsonConverter decimal.format=NUMERIC): printed with the schema's
 * scale when that is exact enough, else as JavaScript prints it. JSON.parse already rounded values
 * beyond 15-17 significant digits; nothing here can restore them.
 */
export function decimalFromNumber(v: number, scale: number): string {
  if (scale >= 0 && scale <= 100 && Math.abs(v) < 1e21) {
    const text = v.toFixed(scale);
    // toFixed keeps the sign of a negative value that rounds to zero: '-0.00'.
    return text.charCodeAt(0) === 0x2d && !/[1-9]/.test(text) ? text.slice(1) : text;
  }
  return `${v}`;
}
