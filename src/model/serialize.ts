import { isUnavailable } from './change-event.ts';

/** How the unavailable-value marker looks in JSON output: distinguishable from any column value. */
export const UNAVAILABLE_JSON = Object.freeze({ $unavailable: true });

/** JSON.stringify replacer for events: bigints as strings, the TOAST marker as UNAVAILABLE_JSON. */
export function eventJsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (isUnavailable(value)) return UNAVAILABLE_JSON;
  return value;
}

/** JSON.stringify skips symbol-valued properties; turn them into the marker first. */
export function toJsonValue(value: unknown): unknown {
  if (isUnavailable(value)) return UNAVAILABLE_JSON;
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJsonValue(v);
    return out;
  }
  return value;
}
