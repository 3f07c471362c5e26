import { randomUUID } from 'node:crypto';

/**
 * Json columns (io.debezium.data.Json: the column's JSON as text) without losing digits.
 *
 * Transforms and handlers want a Json column as a value, so the decoder parses it; but JSON.parse
 * reads every number as a double: 12345678901234567890 becomes 12345678901234567000 and 1e400
 * becomes null when written out again. Node 20 has neither JSON.rawJSON nor the reviver's source
 * text (both Node 21+), so this module keeps, for a parsed value whose text holds such a number,
 * that text beside the value (WeakMap), and the sinks write the text instead of re-serializing.
 * A transform that changes the value (in place or not) gets its change written: the text is used
 * only while the value still serializes as it did when parsed.
 */

interface Source {
  readonly text: string;
  /** JSON.stringify of the value right after parsing: the text stands for the value while this holds. */
  readonly parsed: string;
}

const sources = new WeakMap<object, Source>();
/** Nothing to look for until some value kept its text: the common case costs nothing. */
let anyKept = false;

const DBL_DIG = 15;
const MIN_NORMAL = 2.2250738585072014e-308;

/** Whether JSON.parse reads this number token as exactly the number it writes (up to notation). */
function exactNumber(token: string): boolean {
  const n = Number(token);
  if (!Number.isFinite(n)) return false;
  let digits = 0;
  let nonzero = false;
  let leading = true;
  let trailingZeros = 0;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c === 0x65 || c === 0x45) break; // exponent: not significant digits
    if (c < 0x30 || c > 0x39) continue;
    if (c === 0x30 && leading) continue;
    leading = false;
    nonzero = true;
    digits++;
    trailingZeros = c === 0x30 ? trailingZeros + 1 : 0;
  }
  if (!nonzero) return true;
  // Underflow to zero or into subnormals (fewer significant bits) loses digits too.
  if (n === 0 || Math.abs(n) < MIN_NORMAL) return false;
  return digits - trailingZeros <= DBL_DIG;
}

/** Whether the JSON text holds a number that JSON.parse would change (beyond its notation). */
export function hasInexactNumber(text: string): boolean {
  const end = text.length;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: skip to its closing quote.
      for (i++; i < end; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      for (; j < end; j++) {
        const d = text.charCodeAt(j);
        if (!((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d)) break;
      }
      if (!exactNumber(text.slice(i, j))) return true;
      i = j - 1;
    }
  }
  return false;
}

/** JSON.parse, keeping the text of an object or array whose numbers JSON.parse would change. Throws like JSON.parse. */
export function parseJsonKeepingDigits(text: string): unknown {
  const value: unknown = JSON.parse(text);
  if (typeof value === 'object' && value !== null && hasInexactNumber(text)) {
    sources.set(value, { text: text.trim(), parsed: JSON.stringify(value) });
    anyKept = true;
  }
  return value;
}

/** The source text of a value parsed by parseJsonKeepingDigits, while the value is unchanged; else undefined. */
export function keptJson(value: unknown): string | undefined {
  if (!anyKept || typeof value !== 'object' || value === null) return undefined;
  const source = sources.get(value);
  if (!source) return undefined;
  let now: string;
  try {
    now = JSON.stringify(value);
  } catch {
    return undefined; // changed to hold what JSON cannot (a bigint…): it is not the parsed value any more
  }
  return now === source.parsed ? source.text : undefined;
}

/** Whether a row's columns (or the items of array columns) hold a value with kept text. */
export function holdsKeptJson(row: Readonly<Record<string, unknown>>): boolean {
  if (!anyKept) return false;
  for (const k in row) {
    const v = row[k];
    if (typeof v !== 'object' || v === null) continue;
    if (sources.has(v)) return true;
    if (Array.isArray(v) && v.some((item) => typeof item === 'object' && item !== null && sources.has(item))) return true;
  }
  return false;
}

const TOKEN = `\u0001cdc-router-json-${randomUUID()}-`;
// How JSON.stringify writes the token string: quoted, U+0001 escaped.
const TOKEN_TEXT = new RegExp(`"${JSON.stringify(TOKEN).slice(1, -1).replace(/\\/g, '\\\\')}(\\d+)\\\\u0001"`, 'g');

/**
 * JSON.stringify with `replacer`, writing values with kept text as that text. The values are swapped
 * for a token string (a random nonce: no column value can collide with it) and the tokens replaced
 * in the output: JSON.stringify has no way to emit raw text on Node 20.
 */
export function stringifyKeepingDigits(value: unknown, replacer: (key: string, value: unknown) => unknown): string {
  const texts: string[] = [];
  const out = JSON.stringify(value, (key, v: unknown) => {
    if (typeof v === 'object' && v !== null) {
      const kept = keptJson(v);
      if (kept !== undefined) {
        texts.push(kept);
        return `${TOKEN}${texts.length - 1}\u0001`;
      }
    }
    return replacer(key, v);
  });
  return texts.length === 0 ? out : out.replace(TOKEN_TEXT, (_m, i: string) => texts[Number(i)]!);
}
