import { errors, type Client } from '@elastic/elasticsearch';
import type { Logger } from 'pino';
import type { SinkFailures } from './failures.ts';

/** Where an index's truncate watermark lives in its mapping's `_meta`. */
const WATERMARK_META = 'cdc_router_truncated';
/** How long a read watermark is trusted (another router's truncate is seen within this time). */
export const WATERMARK_TTL_MS = 1_000;

type MappingResponse = Record<string, { mappings?: { _meta?: Record<string, unknown> } } | undefined>;

/** The `_meta` of a get-mapping answer for one index (keyed by its concrete name). */
function metaIn(mapping: MappingResponse): Record<string, unknown> {
  return Object.values(mapping)[0]?.mappings?._meta ?? {};
}

function markIn(mapping: MappingResponse): bigint | undefined {
  const v = metaIn(mapping)[WATERMARK_META];
  return typeof v === 'string' && /^\d+$/.test(v) ? BigInt(v) : undefined;
}

/**
 * Truncate watermarks: per index, the version of its last truncate, kept in the mapping's `_meta`
 * (it outlives the process and is seen by every router writing the index). Changes not newer than
 * it are stale.
 */
export interface Watermarks {
  /**
   * The index's watermark. Read again after WATERMARK_TTL_MS, so another process's truncate is seen
   * within that time; this process's own truncates at once. An index written to keeps its watermark
   * fresh in the background from half the TTL on, so its writes do not wait for a mapping read once
   * a second. Undefined when the index has none, does not exist, or its mapping may not be read (403).
   */
  of(es: Client, index: string): Promise<bigint | undefined>;
  /** Raises the index's watermark to `version` (never lowers it). */
  raise(es: Client, index: string, version: bigint): Promise<void>;
}

export function createWatermarks({ log, failures }: { log: Logger; failures: SinkFailures }): Watermarks {
  const cache = new Map<string, { version: bigint | undefined; readAt: number }>();
  /** Indices whose watermark is being read ahead of its expiry. */
  const refreshing = new Set<string>();

  /** Reads the watermark and keeps it, unless a newer read or a truncate of this process came meanwhile. */
  async function read(es: Client, index: string, warned: boolean): Promise<bigint | undefined> {
    const startedAt = performance.now();
    let version: bigint | undefined;
    try {
      version = markIn(await es.indices.getMapping({ index }));
    } catch (err) {
      const status = err instanceof errors.ResponseError ? err.statusCode : undefined;
      if (status === 403) {
        // A user allowed to write documents but not to read mappings: writes go on unchecked.
        if (!warned) log.warn({ index }, 'cannot read the index mapping (403): truncate watermarks are not checked for this index');
      } else if (status !== 404) {
        throw failures.thrown(err, `cannot read the truncate watermark of index ${index}`);
      }
    }
    // Fresh as of the request, not the answer: the TTL counts from when the mapping was read.
    if ((cache.get(index)?.readAt ?? -Infinity) <= startedAt) cache.set(index, { version, readAt: startedAt });
    return cache.get(index)?.version;
  }

  return {
    async of(es, index) {
      const cached = cache.get(index);
      const age = cached ? performance.now() - cached.readAt : Infinity;
      if (cached && age < WATERMARK_TTL_MS) {
        if (age >= WATERMARK_TTL_MS / 2 && !refreshing.has(index)) {
          refreshing.add(index);
          read(es, index, true)
            .catch(() => undefined) // the next write past the TTL reads again, and fails if that fails
            .finally(() => refreshing.delete(index));
        }
        return cached.version;
      }
      return read(es, index, cached !== undefined);
    },
    async raise(es, index, version) {
      const mapping = await es.indices.getMapping({ index });
      const current = markIn(mapping);
      if (current === undefined || current < version) {
        await es.indices.putMapping({ index, _meta: { ...metaIn(mapping), [WATERMARK_META]: version.toString() } });
      }
      cache.set(index, { version: current !== undefined && current > version ? current : version, readAt: performance.now() });
    },
  };
}
