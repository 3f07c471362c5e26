import { OffsetsRequestError } from '../consume/group-errors.ts';
import type { GroupAdmin, PartitionBounds } from '../consume/group-admin.ts';

/** A position in a topic as an operator names it; resolved to one offset per partition. */
export type OffsetBound =
  | { readonly kind: 'offset'; readonly offset: bigint }
  | { readonly kind: 'timestamp'; readonly ms: number }
  | { readonly kind: 'earliest' }
  | { readonly kind: 'latest' };

export function describeBound(bound: OffsetBound): string {
  switch (bound.kind) {
    case 'offset':
      return `offset ${bound.offset}`;
    case 'timestamp':
      return `timestamp ${new Date(bound.ms).toISOString()}`;
    case 'earliest':
    case 'latest':
      return bound.kind;
  }
}

/** The partitions a request covers: one when named (it must exist), else all of them. */
export function selectPartitions(topic: string, all: readonly PartitionBounds[], partition: number | undefined): PartitionBounds[] {
  if (partition === undefined) return [...all];
  const found = all.find((b) => b.partition === partition);
  if (!found) {
    throw new OffsetsRequestError(
      `topic ${topic} has no partition ${partition} (partitions 0..${all.length - 1})`,
      'UNKNOWN_PARTITION',
    );
  }
  return [found];
}

/**
 * Resolves a bound for each partition, kept within the partition's [low, high]: an offset already
 * deleted by retention means the first one still there, one past the end means the end. A
 * timestamp gives the first record at or after it (the end when there is none).
 */
export async function resolveBound(
  admin: GroupAdmin,
  topic: string,
  partitions: readonly PartitionBounds[],
  bound: OffsetBound,
): Promise<Map<number, bigint>> {
  const byTime = bound.kind === 'timestamp' ? await admin.offsetsAt(topic, bound.ms) : undefined;
  const out = new Map<number, bigint>();
  for (const p of partitions) {
    let offset: bigint;
    switch (bound.kind) {
      case 'offset':
        offset = bound.offset;
        break;
      case 'timestamp':
        offset = byTime?.get(p.partition) ?? p.high;
        break;
      case 'earliest':
        offset = p.low;
        break;
      case 'latest':
        offset = p.high;
        break;
    }
    out.set(p.partition, offset < p.low ? p.low : offset > p.high ? p.high : offset);
  }
  return out;
}
