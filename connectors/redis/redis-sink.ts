import type { Redis } from 'ioredis';
import { SinkError } from '../../src/errors.ts';
import { coalesce, expandResults, type Segment } from '../../src/sink/coalesce.ts';
import { defineSink, once, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { toSinkError } from './classify.ts';
import { configSchema } from './config.ts';
import { connect } from './connection.ts';
import { createKeyLayout } from './key-layout.ts';
import { POSITION_FIELD } from './scripts.ts';
import { createTruncate } from './truncate.ts';
import { createChangeWriter } from './write-changes.ts';

export { POSITION_FIELD };
export { configSchema, type RedisSinkConfig } from './config.ts';

/**
 * Redis sink: each row is a hash (one field per column) or a JSON string under a key built from a
 * template. Writes go through a Lua script that checks the row's stored position and the delete
 * tombstone atomically, so replays and redeliveries never move a row backwards. A batch is a few
 * script calls sent back to back (pipelined): one round trip.
 *
 * What Redis holds, for a row key K = <key_prefix><key_template>:
 * - hash mode: K is a hash of the row's non-null columns plus `__cdc_position`;
 * - json mode: K is the row's JSON with `"__cdc_position"` as its first member (so the script reads
 *   the position with a pattern match, without decoding, and the row stays one key with one TTL);
 * - after a delete, K is gone and `<key_prefix>__cdc:tomb:<K without prefix>` holds the delete's
 *   position, expiring after tombstone_retention_seconds. A write not newer than the row's or the
 *   tombstone's position is skipped (and reported ok); a newer one removes the tombstone;
 * - after a truncate, `<key_prefix>__cdc:trunc:<the table's key pattern>` holds its position (kept
 *   for good: one key per table); writes not newer than it are skipped.
 * A column named `__cdc_position` is refused (per record).
 */
export const redisSink = defineSink({
  kind: 'redis',
  configSchema,
  create(name, config, { logger }): Sink {
    const log = logger.child({ component: 'sink', sink: name, kind: 'redis' });
    const layout = createKeyLayout(config.key_prefix, config.key_template);
    const writeChanges = createChangeWriter(name, config, layout);
    const truncate = createTruncate(config, layout, log);
    let client: Redis | undefined;

    return {
      name,
      kind: 'redis',
      async start() {
        client = await connect(name, config, log);
      },
      async write(batch) {
        const redis = client;
        if (!redis) throw new SinkError(name, 'write before start', { code: 'NOT_STARTED', retriable: false });
        const segments = coalesce(batch);
        const results = new Map<Segment, readonly SinkResult[]>();
        for (const seg of segments) {
          try {
            results.set(seg, seg.kind === 'truncate' ? [await truncate(redis, seg.event)] : await writeChanges(redis, seg.events));
          } catch (err) {
            const error = toSinkError(name, seg.kind === 'truncate' ? `truncate of ${seg.event.table.id} failed` : 'write failed', err);
            if (error.retriable || seg.kind !== 'truncate') throw error;
            results.set(seg, [{ ok: false, error }]);
          }
        }
        return expandResults(batch.length, segments, results);
      },
      close: once(async () => {
        const redis = client;
        client = undefined;
        if (!redis) return;
        try {
          await redis.quit();
        } catch {
          // Not connected: nothing to say goodbye to.
          redis.disconnect();
        }
      }),
    };
  },
});
