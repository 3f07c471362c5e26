import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { encodePosition } from '../../src/model/position.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import type { RedisSinkConfig } from './config.ts';
import type { KeyLayout } from './key-layout.ts';

/**
 * Truncate (`apply`): raises the table's watermark first (MARK_SCRIPT; writes not newer than it are
 * skipped from then on), then removes the table's rows older than the truncate (SCAN over the
 * table's key pattern, SWEEP_SCRIPT); newer ones stay, for a truncate replayed after them.
 */
export function createTruncate(config: RedisSinkConfig, layout: KeyLayout, log: Logger): (redis: Redis, event: ChangeEvent) => Promise<SinkResult> {
  return async (redis, event) => {
    if (config.truncate === 'ignore') return OK;
    const pos = encodePosition(event.position);
    await redis.cdcMarkTruncate(1, [layout.truncateKey(event.table)], [pos]);
    const pattern = layout.tablePattern(event.table);
    const mine = layout.tableMatcher(event.table);
    let cursor = '0';
    let removed = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      const doomed = keys.filter((k) => mine.test(k));
      if (doomed.length > 0) removed += Number(await redis.cdcSweep(doomed.length, doomed, [pos]));
    } while (cursor !== '0');
    log.info({ table: event.table.id, removed }, 'table truncated');
    return OK;
  };
}
