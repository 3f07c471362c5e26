/**
 * A position orders the changes of one source. Sinks store it beside each row and refuse a write
 * whose position is not newer than the stored one, which makes replays and redeliveries harmless.
 *
 * It is a tuple of unsigned integers compared left to right:
 * - PostgreSQL: [lsn], the change's own WAL position. Per key it follows commit order, because a
 *   row can only be changed again after its previous writer committed.
 * - MySQL: [binlog file number, pos, row].
 * - anything else: [kafka offset] (only ordered within one partition).
 */
export type PositionKind = 'postgres' | 'mysql' | 'kafka-offset' | 'source';

export interface Position {
  readonly kind: PositionKind;
  readonly parts: readonly bigint[];
}

const WIDTH = 16;
const MAX = (1n << 64n) - 1n;

export function position(kind: PositionKind, parts: readonly bigint[]): Position {
  for (const p of parts) {
    if (p < 0n || p > MAX) throw new RangeError(`position part out of range: ${p}`);
  }
  return { kind, parts };
}

/** -1, 0 or 1. Positions of different kinds or lengths compare by their encoded form. */
export function comparePositions(a: Position, b: Position): number {
  const n = Math.min(a.parts.length, b.parts.length);
  for (let i = 0; i < n; i++) {
    const x = a.parts[i]!;
    const y = b.parts[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return Math.sign(a.parts.length - b.parts.length);
}

/**
 * Fixed-width lowercase hex, one 16-digit group per part, joined by '.': byte-wise string order equals
 * tuple order, so PostgreSQL (COLLATE "C"), Redis Lua and any other store can compare positions
 * as plain strings.
 */
export function encodePosition(p: Position): string {
  return p.parts.map((x) => x.toString(16).padStart(WIDTH, '0')).join('.');
}

export function decodePosition(kind: PositionKind, encoded: string): Position {
  return position(
    kind,
    encoded.split('.').map((h) => BigInt(`0x${h}`)),
  );
}

/** A PostgreSQL LSN as Debezium gives it (a number) or as PostgreSQL prints it ("16/B374D848"). */
export function parseLsn(value: unknown): bigint | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  if (typeof value === 'bigint' && value >= 0n) return value;
  if (typeof value === 'string') {
    if (/^\d+$/.test(value)) return BigInt(value);
    const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(value);
    if (m) return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
  }
  return undefined;
}

const MAX_LONG = (1n << 63n) - 1n;

/**
 * A position as one signed 64-bit integer, for stores whose versions are longs (Elasticsearch
 * external versioning). Only single-part positions fit; others have no order-preserving long form.
 */
export function positionToVersion(p: Position): bigint | undefined {
  if (p.parts.length !== 1) return undefined;
  const v = p.parts[0]!;
  return v <= MAX_LONG ? v : undefined;
}
