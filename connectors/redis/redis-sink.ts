import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import { Redis, type Result } from 'ioredis';
import { z } from 'zod';
import { errorMessage, SinkError } from '../../src/errors.ts';
import { isUnavailable, type ChangeEvent, type Row } from '../../src/model/change-event.ts';
import { encodePosition } from '../../src/model/position.ts';
import { keptJson } from '../../src/model/raw-json.ts';
import { jsonWithBigints, rowJson } from '../../src/model/serialize.ts';
import { coalesce, expandResults, keyString, type Segment } from '../../src/sink/coalesce.ts';
import { defineSink, OK, once, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { createKeyLayout, DEFAULT_KEY_TEMPLATE, templateProblems, type KeyLayout } from './key-layout.ts';
import { classifyRedisError, classifyReply, scrubbed, toSinkError } from './redis-errors.ts';
import { HASH_SCRIPT, JSON_SCRIPT, KEYS_PER_ROW, MARK_SCRIPT, POSITION_FIELD, SWEEP_SCRIPT } from './scripts.ts';

export { POSITION_FIELD };

declare module 'ioredis' {
  interface RedisCommander<Context> {
    cdcApplyHash(numKeys: number, keys: readonly string[], argv: readonly (string | number)[]): Result<unknown, Context>;
    cdcApplyJson(numKeys: number, keys: readonly string[], argv: readonly (string | number)[]): Result<unknown, Context>;
    cdcMarkTruncate(numKeys: number, keys: readonly string[], argv: readonly string[]): Result<unknown, Context>;
    cdcSweep(numKeys: number, keys: readonly string[], argv: readonly string[]): Result<unknown, Context>;
  }
}

const tlsSchema = z
  .object({
    ca_file: z.string().min(1).optional().describe('PEM file of the CA that signed the server certificate (default: system CAs)'),
    cert_file: z.string().min(1).optional().describe('client certificate (PEM) for mutual TLS'),
    key_file: z.string().min(1).optional().describe('client private key (PEM) for mutual TLS'),
    servername: z.string().min(1).optional().describe('SNI / certificate host name (default: the host)'),
    reject_unauthorized: z.boolean().default(true).describe('verify the server certificate (default true)'),
  })
  .strict();

const configSchema = z
  .object({
    url: z
      .string()
      .optional()
      .describe('redis://[user:password@]host[:port][/db], or rediss:// for TLS; instead of host/port/db'),
    host: z.string().min(1).optional().describe('server host (default 127.0.0.1)'),
    port: z.number().int().min(1).max(65_535).optional().describe('server port (default 6379)'),
    db: z.number().int().min(0).optional().describe('database number (default 0)'),
    username: z.string().min(1).optional().describe('ACL user (Redis 6+); wins over the url'),
    password: z.string().min(1).optional().describe('use ${ENV_VAR}: secrets come from the environment; wins over the url'),
    tls: z
      .union([z.boolean(), tlsSchema])
      .default(false)
      .describe('TLS: true, or options (default false; a rediss:// url turns it on)'),
    key_prefix: z.string().default('').describe('prepended to every key the sink writes (default "")'),
    mode: z
      .enum(['hash', 'json'])
      .default('hash')
      .describe('hash: one field per column, values as strings, nulls omitted, objects as JSON; json: the row as one JSON string (default hash)'),
    key_template: z
      .string()
      .default(DEFAULT_KEY_TEMPLATE)
      .describe(
        'key after the prefix; placeholders {table}, {schema}, {db}, {key} (key values joined by ":"; "\\" and ":" inside values escaped with "\\") (default "{table}:{key}")',
      ),
    ttl_seconds: z.number().int().positive().optional().describe('expire rows this long after their last write (default: never)'),
    tombstone_retention_seconds: z
      .number()
      .int()
      .positive()
      .default(7 * 24 * 3600)
      .describe('how long a delete remembers its position, refusing replays of older writes (default 7 days)'),
    truncate: z
      .enum(['apply', 'ignore'])
      .default('apply')
      .describe("apply: a truncate deletes the table's keys older than it (SCAN over the table's key pattern) and keeps its position so that replayed older writes stay out; ignore: skip it (default apply)"),
    rows_per_script: z
      .number()
      .int()
      .min(1)
      .max(2_000)
      .default(200)
      .describe('rows per script call; a batch is several calls in one pipeline, each blocking Redis briefly (default 200)'),
    connect_timeout_ms: z.number().int().positive().default(10_000).describe('(default 10000)'),
    command_timeout_ms: z.number().int().positive().default(30_000).describe('a batch not answered in time fails, retriable (default 30000)'),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const message of templateProblems(c.key_template)) ctx.addIssue({ code: 'custom', path: ['key_template'], message });
    if (c.url === undefined) return;
    if (c.host !== undefined || c.port !== undefined || c.db !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'set url or host/port/db, not both' });
    }
    let url: URL;
    try {
      url = new URL(c.url);
    } catch {
      // The url may hold a password: never echo it.
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'not a valid URL' });
      return;
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'expected redis:// or rediss://' });
    }
    if (!/^\/?\d*$/.test(url.pathname)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'the path must be a database number' });
  });

export type RedisSinkConfig = z.infer<typeof configSchema>;

interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
}

function endpoint(c: RedisSinkConfig): Endpoint {
  const explicitTls = c.tls !== false;
  if (c.url === undefined) {
    return { host: c.host ?? '127.0.0.1', port: c.port ?? 6379, db: c.db ?? 0, username: c.username, password: c.password, tls: explicitTls };
  }
  const url = new URL(c.url);
  const path = url.pathname.replace(/^\//, '');
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    db: path ? Number(path) : 0,
    username: c.username ?? (url.username ? decodeURIComponent(url.username) : undefined),
    password: c.password ?? (url.password ? decodeURIComponent(url.password) : undefined),
    tls: explicitTls || url.protocol === 'rediss:',
  };
}

async function tlsOptions(c: RedisSinkConfig, on: boolean): Promise<ConnectionOptions | undefined> {
  if (!on) return undefined;
  if (typeof c.tls !== 'object') return {};
  const t = c.tls;
  return {
    ca: t.ca_file ? await readFile(t.ca_file) : undefined,
    cert: t.cert_file ? await readFile(t.cert_file) : undefined,
    key: t.key_file ? await readFile(t.key_file) : undefined,
    servername: t.servername,
    rejectUnauthorized: t.reject_unauthorized,
  };
}

/** A column value as a hash field value; null/undefined never get here (the field is omitted). */
function hashValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return v.toString('base64');
  return keptJson(v) ?? jsonWithBigints(v);
}

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
    const layout: KeyLayout = createKeyLayout(config.key_prefix, config.key_template);
    const hash = config.mode === 'hash';
    const header = [config.ttl_seconds ?? 0, config.tombstone_retention_seconds] as const;
    const newChunk = (): Chunk => ({ keys: [], argv: [...header], starts: [], rows: [] });
    let client: Redis | undefined;

    const fail = (event: ChangeEvent, redisKey: string | undefined, message: string, code: string, retriable: boolean, cause?: unknown) =>
      ({
        ok: false,
        error: new SinkError(
          name,
          `table ${event.table.id} key ${keyString(event.key)}${redisKey === undefined ? '' : ` (redis key ${JSON.stringify(redisKey)})`}: ${message}`,
          { code, retriable, cause },
        ),
      }) as const;

    /** Appends one row's script arguments; returns an error message instead when it cannot be written. */
    function encodeRow(event: ChangeEvent, argv: (string | number)[]): string | undefined {
      const pos = encodePosition(event.position);
      if (event.op === 'd') {
        argv.push('d', pos);
        return undefined;
      }
      const after: Readonly<Row> | null = event.after;
      if (!after) return `a '${event.op}' change without a row image`;
      if (Object.hasOwn(after, POSITION_FIELD)) return `column ${POSITION_FIELD} is reserved for the sink's position`;
      let unavailable: string[] | undefined;
      if (hash) {
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
        return undefined;
      }
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
      return undefined;
    }

    /** One script call, written to the socket at once; the promise settles with its reply or error. */
    const send = (redis: Redis, keys: readonly string[], argv: readonly (string | number)[]): Promise<Settled> =>
      (hash ? redis.cdcApplyHash(keys.length, keys, argv) : redis.cdcApplyJson(keys.length, keys, argv)).then(
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
      const singles: { chunk: Chunk; reply: Promise<Settled> }[] = [];
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
          const { code, retriable } = classifyRedisError(r.err);
          if (retriable) throw toSinkError(name, 'write failed', r.err);
          out[index] = fail(event, chunk.keys[0], errorMessage(r.err), code, false, scrubbed(r.err));
        } else if (!readStatuses(r.reply, chunk, events, out)) {
          out[index] = fail(event, chunk.keys[0], `unexpected script reply ${JSON.stringify(r.reply)}`, 'REDIS_SCRIPT', false);
        }
      }
    }

    async function writeChanges(redis: Redis, events: readonly ChangeEvent[]): Promise<SinkResult[]> {
      const out = new Array<SinkResult>(events.length);
      // Each chunk is sent as soon as it is encoded, without waiting for earlier replies: the batch
      // is still one pipelined round trip, and Redis works on the first chunks while the later
      // ones are being encoded.
      const calls: { chunk: Chunk; reply: Promise<Settled> }[] = [];
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
          problem = encodeRow(event, chunk.argv);
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

      const broken: Chunk[] = [];
      let transport: unknown;
      for (const { chunk: c, reply } of calls) {
        const r = await reply;
        if ('err' in r) {
          // Transport trouble fails the batch (retried whole; the guard makes repeats harmless).
          if (classifyRedisError(r.err).retriable) transport ??= r.err;
          else broken.push(c);
        } else if (!readStatuses(r.reply, c, events, out)) broken.push(c);
      }
      if (transport !== undefined) throw toSinkError(name, 'write failed', transport);
      if (broken.length > 0) await isolate(redis, broken, events, out);
      return out;
    }

    /**
     * Raises the table's watermark first (writes older than it are skipped from then on), then
     * removes the table's rows older than the truncate; newer ones stay, for a truncate replayed
     * after them.
     */
    async function truncate(redis: Redis, event: ChangeEvent): Promise<SinkResult> {
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
    }

    return {
      name,
      kind: 'redis',
      async start() {
        const ep = endpoint(config);
        const redis = new Redis({
          host: ep.host,
          port: ep.port,
          db: ep.db,
          username: ep.username,
          password: ep.password,
          tls: await tlsOptions(config, ep.tls),
          connectionName: `cdc-router:${name}`,
          connectTimeout: config.connect_timeout_ms,
          commandTimeout: config.command_timeout_ms,
          lazyConnect: true,
          // Fail fast while disconnected: the pipeline's retrier owns backoff, and a write must
          // never sit in a client queue the router does not see.
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
          scripts: {
            cdcApplyHash: { lua: HASH_SCRIPT },
            cdcApplyJson: { lua: JSON_SCRIPT },
            cdcMarkTruncate: { lua: MARK_SCRIPT },
            cdcSweep: { lua: SWEEP_SCRIPT },
          },
        });
        let down = false;
        let firstError: Error | undefined;
        redis.on('error', (err: Error) => {
          firstError ??= err;
          // ioredis reports every failed reconnect; one warning per outage is enough.
          if (!down) log.warn({ err: scrubbed(err) }, 'redis connection error');
          down = true;
        });
        redis.on('ready', () => {
          if (down) log.info('redis connection restored');
          down = false;
        });
        try {
          await redis.connect();
          await redis.ping();
        } catch (err) {
          redis.disconnect();
          // connect() only says "Connection is closed."; the first error event said why (WRONGPASS…).
          throw toSinkError(name, `cannot connect to ${ep.host}:${ep.port}`, firstError ?? err);
        }
        client = redis;
        log.info({ host: ep.host, port: ep.port, db: ep.db, tls: ep.tls, mode: config.mode }, 'redis sink connected');
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
