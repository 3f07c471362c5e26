import type { Redis } from 'ioredis';
import { errorMessage, SinkError } from '../../src/errors.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { keyString } from '../../src/sink/coalesce.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import { classify, classifyReply, scrubbed, toSinkError } from './classify.ts';
import type { RedisSinkConfig } from './config.ts';
import type { KeyLayout } from './key-layout.ts';
import { encodeRow } from './row-args.ts';
import { KEYS_PER_ROW } from './scripts.ts';

/** A script call's outcome: its reply or what it was rejected with. */
type Settled = { readonly reply: unknown } | { readonly err: unknown };

/**
 * One script call's worth of rows. `keys` and `argv` are exactly what the script receives;
 * `starts[j]` is where row j's arguments begin in argv (so a row can be re-run alone).
 */
interface Chunk {
  readonly keys: string[];
  readonly argv: (string | number)[];
  readonly starts: number[];
  /** Index into the segment's events, per row. */
  readonly rows: number[];
}

interface Call {
  readonly chunk: Chunk;
  readonly reply: Promise<Settled>;
}

/**
 * Writes a run of inserts, updates and deletes: the rows in chunks of `rows_per_script`, each chunk
 * one call of the apply script, all pipelined; results per row.
 */
export function createChangeWriter(sink: string, config: RedisSinkConfig, layout: KeyLayout): (redis: Redis, events: readonly ChangeEvent[]) => Promise<SinkResult[]> {
  const header = [config.ttl_seconds ?? 0, config.tombstone_retention_seconds] as const;
  const newChunk = (): Chunk => ({ keys: [], argv: [...header], starts: [], rows: [] });

  const fail = (event: ChangeEvent, redisKey: string | undefined, message: string, code: string, retriable: boolean, cause?: unknown) =>
    ({
      ok: false,
      error: new SinkError(
        sink,
        `table ${event.table.id} key ${keyString(event.key)}${redisKey === undefined ? '' : ` (redis key ${JSON.stringify(redisKey)})`}: ${message}`,
        { code, retriable, cause },
      ),
    }) as const;

  /** One script call, written to the socket at once; the promise settles with its reply or error. */
  const send = (redis: Redis, keys: readonly string[], argv: readonly (string | number)[]): Promise<Settled> =>
    (config.mode === 'hash' ? redis.cdcApplyHash(keys.length, keys, argv) : redis.cdcApplyJson(keys.length, keys, argv)).then(
      (reply) => ({ reply }),
      (err: unknown) => ({ err }),
    );

  /** Maps a script reply for `chunk` into results; false when the reply is not what the script returns. */
  function readStatuses(reply: unknown, chunk: Chunk, events: readonly ChangeEvent[], out: SinkResult[]): boolean {
    if (!Array.isArray(reply) || reply.length !== chunk.rows.length) return false;
    reply.forEach((status: unknown, j) => {
      const index = chunk.rows[j]!;
      const event = events[index]!;
      if (status === 0 || status === 1) out[index] = OK;
      else {
        const message = typeof status === 'string' && status.startsWith('E') ? status.slice(1) : `unexpected script reply ${String(status)}`;
        const { code, retriable } = classifyReply(message);
        out[index] = fail(event, chunk.keys[KEYS_PER_ROW * j], message, code, retriable);
      }
    });
    return true;
  }

  /**
   * Chunks whose script call failed as a whole with a permanent error: run their rows one by one
   * (all sent at once) so that only the offending rows fail. Rows a failed call already applied
   * are harmless to repeat: the guard makes them no-ops.
   */
  async function isolate(redis: Redis, broken: readonly Chunk[], events: readonly ChangeEvent[], out: SinkResult[]): Promise<void> {
    const singles: Call[] = [];
    for (const c of broken) {
      c.rows.forEach((index, j) => {
        const keys = c.keys.slice(KEYS_PER_ROW * j, KEYS_PER_ROW * (j + 1));
        const argv = [...header, ...c.argv.slice(c.starts[j], c.starts[j + 1] ?? c.argv.length)];
        singles.push({ chunk: { keys, argv, starts: [header.length], rows: [index] }, reply: send(redis, keys, argv) });
      });
    }
    for (const { chunk, reply } of singles) {
      const r = await reply;
      const index = chunk.rows[0]!;
      const event = events[index]!;
      if ('err' in r) {
        const { code, retriable } = classify(r.err);
        if (retriable) throw toSinkError(sink, 'write failed', r.err);
        out[index] = fail(event, chunk.keys[0], errorMessage(r.err), code, false, scrubbed(r.err));
      } else if (!readStatuses(r.reply, chunk, events, out)) {
        out[index] = fail(event, chunk.keys[0], `unexpected script reply ${JSON.stringify(r.reply)}`, 'REDIS_SCRIPT', false);
      }
    }
  }

  /**
   * Encodes the rows into chunks, each sent as soon as it is full, without waiting for earlier
   * replies: the batch is still one pipelined round trip, and Redis works on the first chunks while
   * the later ones are being encoded. Rows that cannot be written fail in `out`.
   */
  function sendAll(redis: Redis, events: readonly ChangeEvent[], out: SinkResult[]): Call[] {
    const calls: Call[] = [];
    let chunk: Chunk = newChunk();
    const flush = () => {
      if (chunk.rows.length === 0) return;
      calls.push({ chunk, reply: send(redis, chunk.keys, chunk.argv) });
      chunk = newChunk();
    };
    events.forEach((event, index) => {
      const key = layout.rowKey(event.table, event.key);
      if (typeof key !== 'string') {
        out[index] = fail(event, undefined, key.error, 'REDIS_NO_KEY', false);
        return;
      }
      const start = chunk.argv.length;
      let problem: string | undefined;
      try {
        problem = encodeRow(event, chunk.argv, config.mode);
      } catch (err) {
        // A row JSON cannot hold (nested deeper than the serializer's stack) fails alone, not the batch.
        chunk.argv.length = start;
        out[index] = fail(event, key, `cannot serialize the row: ${errorMessage(err)}`, 'NOT_SERIALIZABLE', false, err);
        return;
      }
      if (problem !== undefined) {
        chunk.argv.length = start;
        out[index] = fail(event, key, problem, 'REDIS_MAPPING', false);
        return;
      }
      chunk.keys.push(key, layout.tombstoneKey(key), layout.truncateKey(event.table));
      chunk.starts.push(start);
      chunk.rows.push(index);
      if (chunk.rows.length >= config.rows_per_script) flush();
    });
    flush();
    return calls;
  }

  return async (redis, events) => {
    const out = new Array<SinkResult>(events.length);
    const broken: Chunk[] = [];
    let transport: unknown;
    for (const { chunk, reply } of sendAll(redis, events, out)) {
      const r = await reply;
      if ('err' in r) {
        // Transport trouble fails the batch (retried whole; the guard makes repeats harmless).
        if (classify(r.err).retriable) transport ??= r.err;
        else broken.push(chunk);
      } else if (!readStatuses(r.reply, chunk, events, out)) broken.push(chunk);
    }
    if (transport !== undefined) throw toSinkError(sink, 'write failed', transport);
    if (broken.length > 0) await isolate(redis, broken, events, out);
    return out;
  };
}
