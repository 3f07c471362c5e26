import { createHash } from 'node:crypto';
import { DEBEZIUM_UNAVAILABLE_PLACEHOLDER } from '../model/change-event.ts';

/**
 * The shapes Debezium's PostgreSQL connector gives the unchanged-TOAST placeholder, per column type.
 * Only top-level columns can carry one (Debezium replaces whole column values).
 */
const PLACEHOLDER = DEBEZIUM_UNAVAILABLE_PLACEHOLDER;
const PLACEHOLDER_BYTES = Buffer.from(PLACEHOLDER, 'utf8');

/** bytea: the placeholder's bytes, base64 in JSON ("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="). */
export const PLACEHOLDER_BASE64 = PLACEHOLDER_BYTES.toString('base64');

/** int[] / bigint[]: one element per placeholder byte. */
const PLACEHOLDER_CODES: readonly number[] = [...PLACEHOLDER_BYTES];

/** uuid[]: [the name-based (version 3) UUID of the placeholder bytes], as Java's nameUUIDFromBytes. */
export const PLACEHOLDER_UUID = ((): string => {
  const h = createHash('md5').update(PLACEHOLDER_BYTES).digest();
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x30;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
})();

export function isStringPlaceholder(v: unknown): boolean {
  return v === PLACEHOLDER;
}

export function isBytesPlaceholder(v: unknown): boolean {
  return v === PLACEHOLDER_BASE64;
}

/** text[], bytea[], uuid[] (single placeholder element) and int[]/bigint[] (the placeholder's bytes). */
export function isArrayPlaceholder(v: readonly unknown[]): boolean {
  if (v.length === 1) {
    const e = v[0];
    return e === PLACEHOLDER || e === PLACEHOLDER_BASE64 || e === PLACEHOLDER_UUID;
  }
  if (v.length !== PLACEHOLDER_CODES.length || v[0] !== PLACEHOLDER_CODES[0]) return false;
  for (let i = 1; i < v.length; i++) if (v[i] !== PLACEHOLDER_CODES[i]) return false;
  return true;
}

/** hstore as a map: {placeholder: placeholder}. */
export function isMapPlaceholder(v: object): boolean {
  let n = 0;
  for (const k in v) {
    if (++n > 1 || k !== PLACEHOLDER) return false;
  }
  return n === 1 && (v as Record<string, unknown>)[PLACEHOLDER] === PLACEHOLDER;
}

/** Any of the shapes above, for rows without a schema (no type to tell which one applies). */
export function isPlaceholderOfAnyType(v: unknown): boolean {
  if (typeof v === 'string') return v === PLACEHOLDER || v === PLACEHOLDER_BASE64;
  if (typeof v !== 'object' || v === null) return false;
  return Array.isArray(v) ? isArrayPlaceholder(v) : isMapPlaceholder(v);
}
