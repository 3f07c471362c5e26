import { isUnavailable, type ChangeEvent, type Row } from '../../src/model/change-event.ts';
import { encodePosition } from '../../src/model/position.ts';
import { keptJson } from '../../src/model/raw-json.ts';
import { jsonWithBigints, rowJson } from '../../src/model/serialize.ts';
import { POSITION_FIELD } from './scripts.ts';

/**
 * One row's arguments to the apply scripts, in the call shape scripts.ts describes. Unchanged-TOAST
 * columns are named, so that the script keeps their stored values.
 */

/** A column value as a hash field value; null/undefined never get here (the field is omitted). */
function hashValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return v.toString('base64');
  return keptJson(v) ?? jsonWithBigints(v);
}

function pushHashRow(after: Readonly<Row>, pos: string, argv: (string | number)[]): void {
  let unavailable: string[] | undefined;
  argv.push('u', pos, 0);
  const countAt = argv.length - 1;
  let n = 0;
  for (const col in after) {
    const v = after[col];
    if (v === null || v === undefined) continue;
    if (isUnavailable(v)) (unavailable ??= []).push(col);
    else {
      argv.push(col, hashValue(v));
      n += 2;
    }
  }
  argv[countAt] = n;
  if (unavailable) argv.push(unavailable.length, ...unavailable);
  else argv.push(0);
}

function pushJsonRow(after: Readonly<Row>, pos: string, argv: (string | number)[]): void {
  let unavailable: string[] | undefined;
  let row: Readonly<Row> = after;
  for (const col in after) {
    if (!isUnavailable(after[col])) continue;
    (unavailable ??= []).push(col);
  }
  if (unavailable) {
    const copy: Row = {};
    for (const col in after) if (!isUnavailable(after[col])) copy[col] = after[col];
    row = copy;
  }
  const body = rowJson(row);
  // Built by hand: JSON.stringify would put integer-like column names before the position.
  const json = `{"${POSITION_FIELD}":"${pos}"${body === '{}' ? '}' : `,${body.slice(1)}`}`;
  argv.push('u', pos, json);
  if (unavailable) argv.push(unavailable.length, ...unavailable.map((c) => JSON.stringify(c)));
  else argv.push(0);
}

/**
 * Appends one row's script arguments to `argv`; returns an error message instead when the row
 * cannot be written. Throws when the row cannot be serialized (the caller drops what was pushed).
 */
export function encodeRow(event: ChangeEvent, argv: (string | number)[], mode: 'hash' | 'json'): string | undefined {
  const pos = encodePosition(event.position);
  if (event.op === 'd') {
    argv.push('d', pos);
    return undefined;
  }
  const after: Readonly<Row> | null = event.after;
  if (!after) return `a '${event.op}' change without a row image`;
  if (Object.hasOwn(after, POSITION_FIELD)) return `column ${POSITION_FIELD} is reserved for the sink's position`;
  if (mode === 'hash') pushHashRow(after, pos, argv);
  else pushJsonRow(after, pos, argv);
  return undefined;
}
