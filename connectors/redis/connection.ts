import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import { Redis, type Result } from 'ioredis';
import type { Logger } from 'pino';
import { toSinkError, scrubbed } from './classify.ts';
import type { RedisSinkConfig } from './config.ts';
import { HASH_SCRIPT, JSON_SCRIPT, MARK_SCRIPT, SWEEP_SCRIPT } from './scripts.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    cdcApplyHash(numKeys: number, keys: readonly string[], argv: readonly (string | number)[]): Result<unknown, Context>;
    cdcApplyJson(numKeys: number, keys: readonly string[], argv: readonly (string | number)[]): Result<unknown, Context>;
    cdcMarkTruncate(numKeys: number, keys: readonly string[], argv: readonly string[]): Result<unknown, Context>;
    cdcSweep(numKeys: number, keys: readonly string[], argv: readonly string[]): Result<unknown, Context>;
  }
}

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

/**
 * A client connected to the configured server, with the sink's scripts defined on it, once it
 * answered a PING. It fails fast while disconnected and reconnects in the background.
 */
export async function connect(sink: string, config: RedisSinkConfig, log: Logger): Promise<Redis> {
  const ep = endpoint(config);
  const redis = new Redis({
    host: ep.host,
    port: ep.port,
    db: ep.db,
    username: ep.username,
    password: ep.password,
    tls: await tlsOptions(config, ep.tls),
    connectionName: `cdc-router:${sink}`,
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
    throw toSinkError(sink, `cannot connect to ${ep.host}:${ep.port}`, firstError ?? err);
  }
  log.info({ host: ep.host, port: ep.port, db: ep.db, tls: ep.tls, mode: config.mode }, 'redis sink connected');
  return redis;
}
