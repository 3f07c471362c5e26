import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once as eventOnce } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyLayout, escapeGlob } from '../../connectors/redis/key-layout.ts';
import { classify } from '../../connectors/redis/classify.ts';
import { POSITION_FIELD, redisSink } from '../../connectors/redis/redis-sink.ts';
import { objectMemberSpans } from '../../src/decode/json-scan.ts';
import { SinkError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import type { Row, TableId } from '../../src/model/change-event.ts';
import type { Sink, SinkResult } from '../../src/sink/sink.ts';
import { makeEvent, UNAVAILABLE } from '../support/events.ts';
import { describeSinkConformance, type ConformanceTarget } from './sink-conformance.ts';

const HOST = '127.0.0.1';
const PORT = 6379;
const logger = createLogger({ level: 'error' });

type Mode = 'hash' | 'json';

/** Hash mode stores strings: numbers and booleans stringified, objects as JSON, nulls absent. */
function projectHash(row: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (v === null || v === undefined) continue;
    out[k] = typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
  return out;
}

const tableId = (schema: string, table: string): TableId => ({ id: `${schema}.${table}`, db: 'shop', schema, table });

interface Target extends ConformanceTarget {
  readonly admin: Redis;
  readonly prefix: string;
  key(table: string, key: Row): string;
  raw(table: string, key: Row): Promise<string | null>;
}

async function openTarget(mode: Mode, schema: string, extra: Record<string, unknown> = {}): Promise<Target> {
  const prefix = `cdc-test:${schema}:${mode}:`;
  const config = redisSink.configSchema.parse({ host: HOST, port: PORT, key_prefix: prefix, mode, ...extra });
  const sink = redisSink.create(`redis-${mode}`, config, { logger });
  await sink.start();
  const admin = new Redis({ host: HOST, port: PORT, lazyConnect: true });
  await admin.connect();
  const layout = createKeyLayout(prefix, config.key_template);
  const key = (table: string, k: Row) => {
    const rk = layout.rowKey(tableId(schema, table), k);
    if (typeof rk !== 'string') throw new Error(rk.error);
    return rk;
  };
  const scanAll = async (pattern: string) => {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      found.push(...keys);
    } while (cursor !== '0');
    return found;
  };
  return {
    sink,
    admin,
    prefix,
    key,
    raw: (table, k) => admin.get(key(table, k)),
    async read(table, k) {
      const rk = key(table, k);
      if (mode === 'hash') {
        const h: Row = await admin.hgetall(rk);
        delete h[POSITION_FIELD];
        return Object.keys(h).length === 0 ? undefined : h;
      }
      const s = await admin.get(rk);
      if (s === null) return undefined;
      const row = JSON.parse(s) as Row;
      delete row[POSITION_FIELD];
      return row;
    },
    async count(table) {
      const t = tableId(schema, table);
      const mine = layout.tableMatcher(t);
      return (await scanAll(layout.tablePattern(t))).filter((k) => mine.test(k)).length;
    },
    async storedText(table, k, column) {
      const rk = key(table, k);
      if (mode === 'hash') return (await admin.hget(rk, column)) ?? undefined;
      const s = await admin.get(rk);
      const span = s === null ? undefined : objectMemberSpans(s)?.get(column);
      return span && s !== null ? s.slice(span.start, span.end) : undefined;
    },
    project: mode === 'hash' ? projectHash : undefined,
    async cleanup() {
      const keys = await scanAll(`${escapeGlob(prefix)}*`);
      for (let i = 0; i < keys.length; i += 1000) await admin.unlink(...keys.slice(i, i + 1000));
      admin.disconnect();
    },
  };
}

describeSinkConformance('redis (hash mode)', (schema) => openTarget('hash', schema));
describeSinkConformance('redis (json mode)', (schema) => openTarget('json', schema));

function failure(r: SinkResult | undefined): SinkError {
  if (!r || r.ok) throw new Error(`expected a failed result, got ${JSON.stringify(r)}`);
  if (!(r.error instanceof SinkError)) throw new Error(`expected a SinkError, got ${r.error.name}`);
  return r.error;
}

for (const mode of ['hash', 'json'] as const) {
  describe(`redis sink specifics (${mode} mode)`, () => {
    const schema = `rs_${randomUUID().slice(0, 8)}`;
    let t: Target;
    let lsn = 5_000;
    const next = () => (lsn += 10);
    const ev = (op: 'c' | 'u' | 'd', table: string, key: Row, after: Row | null, at = next()) =>
      makeEvent({ op, schema, table, key, after, before: op === 'd' ? key : null, lsn: at });

    beforeAll(async () => {
      t = await openTarget(mode, schema, { ttl_seconds: 3600, tombstone_retention_seconds: 120 });
    });
    afterAll(async () => {
      await t?.cleanup();
      await t?.sink.close();
    });

    it('fails only the record whose key holds the wrong type (WRONGTYPE), permanently', async () => {
      await t.admin.rpush(t.key('wrong', { id: 2 }), 'a list, not a row');
      const results = await t.sink.write([
        ev('c', 'wrong', { id: 1 }, { id: 1, v: 'a' }),
        ev('c', 'wrong', { id: 2 }, { id: 2, v: 'b' }),
        ev('c', 'wrong', { id: 3 }, { id: 3, v: 'c' }),
      ]);
      expect(results[0]).toEqual({ ok: true });
      expect(results[2]).toEqual({ ok: true });
      const err = failure(results[1]);
      expect(err).toBeInstanceOf(SinkError);
      expect(err.retriable).toBe(false);
      expect(err.code).toBe('REDIS_WRONGTYPE');
      expect(err.message).toContain(`${schema}.wrong`);
      expect(err.message).toContain('[2]');
      expect(await t.read('wrong', { id: 1 })).toBeDefined();
      expect(await t.read('wrong', { id: 3 })).toBeDefined();
      // A delete of that key fails the same way (the tombstone check reads the row first).
      expect(failure((await t.sink.write([ev('d', 'wrong', { id: 2 }, null)]))[0]).code).toBe('REDIS_WRONGTYPE');
    });

    it('sets the row TTL and the tombstone retention', async () => {
      await t.sink.write([ev('c', 'ttl', { id: 1 }, { id: 1 }), ev('c', 'ttl', { id: 2 }, { id: 2 })]);
      const ttl = await t.admin.ttl(t.key('ttl', { id: 1 }));
      expect(ttl).toBeGreaterThan(3500);
      expect(ttl).toBeLessThanOrEqual(3600);
      await t.sink.write([ev('d', 'ttl', { id: 2 }, null)]);
      const layout = createKeyLayout(t.prefix, '{table}:{key}');
      const tomb = layout.tombstoneKey(t.key('ttl', { id: 2 }));
      const tombTtl = await t.admin.ttl(tomb);
      expect(tombTtl).toBeGreaterThan(100);
      expect(tombTtl).toBeLessThanOrEqual(120);
      // The next write of the key clears the tombstone.
      await t.sink.write([ev('c', 'ttl', { id: 2 }, { id: 2 })]);
      expect(await t.admin.exists(tomb)).toBe(0);
    });

    it('builds keys from the template with escaped key values', async () => {
      await t.sink.write([ev('c', 'esc', { a: 'x:y', b: 'back\\slash' }, { a: 'x:y', b: 'back\\slash' })]);
      expect(await t.admin.exists(`${t.prefix}esc:x\\:y:back\\\\slash`)).toBe(1);
      // A truncate of table "esc" leaves table "esc:x" alone, although its keys share the text prefix.
      await t.sink.write([ev('c', 'esc:x', { id: 1 }, { id: 1 })]);
      await t.sink.write([makeEvent({ op: 't', schema, table: 'esc', key: null, lsn: next() })]);
      expect(await t.count('esc')).toBe(0);
      expect(await t.count('esc:x')).toBe(1);
    });

    it('refuses rows it cannot address or store, per record', async () => {
      const results = await t.sink.write([
        ev('c', 'bad', { id: 1 }, { id: 1, [POSITION_FIELD]: 'mine' }),
        makeEvent({ op: 'c', schema, table: 'bad', key: null, after: { id: 2 }, lsn: next() }),
        ev('c', 'bad', { id: 3 }, { id: 3 }),
      ]);
      expect(failure(results[0]).code).toBe('REDIS_MAPPING');
      expect(failure(results[1]).code).toBe('REDIS_NO_KEY');
      expect(results[2]).toEqual({ ok: true });
    });

    it('writes rows wider than one Lua unpack() (5000 columns)', async () => {
      const wide: Row = { id: 1 };
      for (let i = 0; i < 5_000; i++) wide[`c${i}`] = i;
      const results = await t.sink.write([ev('c', 'wide', { id: 1 }, wide)]);
      expect(results).toEqual([{ ok: true }]);
      const back = await t.read('wide', { id: 1 });
      expect(Object.keys(back ?? {})).toHaveLength(5_001);
      expect(back?.['c4999']).toEqual(mode === 'hash' ? '4999' : 4999);
    });

    it('drops columns that became null and stores nothing for UNAVAILABLE on a new row', async () => {
      await t.sink.write([ev('c', 'nulls', { id: 1 }, { id: 1, a: 'x', b: 'y' })]);
      await t.sink.write([ev('u', 'nulls', { id: 1 }, { id: 1, a: null, b: 'z' })]);
      expect(await t.read('nulls', { id: 1 })).toEqual(mode === 'hash' ? { id: '1', b: 'z' } : { id: 1, a: null, b: 'z' });
      await t.sink.write([ev('c', 'nulls', { id: 2 }, { id: 2, body: UNAVAILABLE })]);
      expect(await t.read('nulls', { id: 2 })).toEqual(mode === 'hash' ? { id: '2' } : { id: 2 });
    });

    if (mode === 'json') {
      it('keeps the stored bytes of UNAVAILABLE columns exactly (merged in Lua)', async () => {
        const meta = '{"tags":[],"n":9007199254740993,"f":0.1000000000000000055511151231257827,"s":"a\\"}],{b"}';
        const weird = 'we"ird}col';
        const first = { id: 1, title: 'v1', meta: JSON.parse(meta) as unknown, [weird]: [1, { x: '}' }], big: 12345678901234567n };
        await t.sink.write([ev('c', 'merge', { id: 1 }, first)]);
        const before = await t.raw('merge', { id: 1 });
        expect(before).toContain(`"meta":${JSON.stringify(JSON.parse(meta))}`);
        expect(before).toContain('"big":"12345678901234567"');
        await t.sink.write([ev('u', 'merge', { id: 1 }, { id: 1, title: 'v2', meta: UNAVAILABLE, [weird]: UNAVAILABLE, big: 1 })]);
        const after = await t.raw('merge', { id: 1 });
        expect(after).toContain(`"meta":${JSON.stringify(JSON.parse(meta))}`);
        expect(after).toContain(`${JSON.stringify(weird)}:[1,{"x":"}"}]`);
        expect(JSON.parse(after ?? 'null')).toEqual({
          [POSITION_FIELD]: expect.any(String) as unknown,
          id: 1,
          title: 'v2',
          meta: JSON.parse(meta) as unknown,
          [weird]: [1, { x: '}' }],
          big: 1,
        });
      });
    } else {
      it('keeps the stored field of UNAVAILABLE columns', async () => {
        await t.sink.write([ev('c', 'merge', { id: 1 }, { id: 1, title: 'v1', body: 'long', extra: 'x' })]);
        await t.sink.write([ev('u', 'merge', { id: 1 }, { id: 1, title: 'v2', body: UNAVAILABLE })]);
        expect(await t.read('merge', { id: 1 })).toEqual({ id: '1', title: 'v2', body: 'long' });
      });
    }
  });
}

describe('redis sink configuration and error classification', () => {
  it('rejects impossible configurations', () => {
    const parse = (c: Record<string, unknown>) => redisSink.configSchema.safeParse(c);
    expect(parse({ url: 'redis://h:6379/0', host: 'h' }).success).toBe(false);
    expect(parse({ url: 'http://h' }).success).toBe(false);
    expect(parse({ key_template: '{table}' }).success).toBe(false);
    expect(parse({ key_template: '{table}:{key}:{nope}' }).success).toBe(false);
    expect(parse({ url: 'rediss://user:secret@h:6380/2', key_template: '{db}/{schema}/{table}/{key}' }).success).toBe(true);
  });

  it('classifies server and transport errors', async () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    for (const m of ['LOADING Redis is loading', 'BUSY Redis is busy', 'READONLY You can\'t write', 'CLUSTERDOWN down', 'TRYAGAIN later', 'OOM command not allowed']) {
      expect(classify(reply(m)).retriable).toBe(true);
    }
    expect(classify(reply('WRONGTYPE Operation against a key'))).toEqual({ code: 'REDIS_WRONGTYPE', retriable: false, message: 'WRONGTYPE Operation against a key', status: 'WRONGTYPE' });
    expect(classify(new Error('Connection is closed.')).retriable).toBe(true);
    expect(classify(new Error('Command timed out'))).toEqual({ code: 'REDIS_TIMEOUT', retriable: true, message: 'Command timed out', status: undefined });
    expect(classify(new TypeError('bug')).retriable).toBe(false);
    // A real error reply from the server.
    const admin = new Redis({ host: HOST, port: PORT, lazyConnect: true });
    await admin.connect();
    const err = await admin.call('NO-SUCH-COMMAND').catch((e: unknown) => e);
    admin.disconnect();
    expect(classify(err)).toMatchObject({ code: 'REDIS_ERR', retriable: false, status: 'ERR' });
  });

  it('fails start() with a retriable error when nothing listens', async () => {
    const port = await freePort();
    const sink = redisSink.create('down', redisSink.configSchema.parse({ host: HOST, port, connect_timeout_ms: 1_000 }), { logger });
    const err = await sink.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkError);
    expect((err as SinkError).retriable).toBe(true);
    await sink.close();
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, HOST);
  await eventOnce(server, 'listening');
  const address = server.address();
  server.close();
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** A private, throwaway redis-server: this test kills and restarts it. */
async function startRedis(port: number, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
    child.stdout?.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes('Ready to accept connections')) resolve();
    });
  });
  child.stdout?.resume();
  return child;
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = eventOnce(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

describe('redis sink against a private server it may break', () => {
  let server: ChildProcess | undefined;
  let sink: Sink | undefined;
  const schema = `fault_${randomUUID().slice(0, 8)}`;
  let lsn = 100;
  const ev = (id: number) => makeEvent({ op: 'c', schema, table: 'items', key: { id }, after: { id, v: `row ${id}` }, lsn: (lsn += 10) });

  afterAll(async () => {
    await sink?.close();
    if (server) await stopRedis(server);
  });

  it('narrows a whole-call script failure down to the rows that cause it', async () => {
    // EXPIRE disabled: every upsert with a TTL fails inside the script; deletes do not use it.
    const port = await freePort();
    const broken = await startRedis(port, ['--rename-command', 'EXPIRE', '']);
    const s = redisSink.create('broken', redisSink.configSchema.parse({ host: HOST, port, ttl_seconds: 60 }), { logger });
    try {
      await s.start();
      const results = await s.write([ev(1), makeEvent({ op: 'd', schema, table: 'items', key: { id: 2 }, lsn: (lsn += 10) }), ev(3)]);
      expect(results[1]).toEqual({ ok: true });
      for (const r of [results[0], results[2]]) {
        const err = failure(r);
        expect(err.retriable).toBe(false);
        expect(err.message).toMatch(/items key \[[13]\].*Unknown Redis command/);
        // The cause does not drag the call's arguments (row data) along.
        expect(err.cause).not.toHaveProperty('command');
      }
    } finally {
      await s.close();
      await stopRedis(broken);
    }
  });

  it('authenticates with username and password, and never leaks the password', async () => {
    const port = await freePort();
    const secured = await startRedis(port, ['--requirepass', 's3cret-pw']);
    const open = async (password: string) => {
      const s = redisSink.create('auth', redisSink.configSchema.parse({ url: `redis://default:${password}@${HOST}:${port}/1` }), { logger });
      return s.start().then(
        () => s,
        async (e: unknown) => {
          await s.close();
          throw e;
        },
      );
    };
    try {
      const err = await open('wrong').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SinkError);
      expect(err).toMatchObject({ code: 'REDIS_WRONGPASS', retriable: true });
      expect(JSON.stringify(err, Object.getOwnPropertyNames(err))).not.toContain('wrong@');
      const s = await open('s3cret-pw');
      expect(await s.write([ev(7)])).toEqual([{ ok: true }]);
      await s.close();
      const admin = new Redis({ host: HOST, port, password: 's3cret-pw', db: 1, lazyConnect: true });
      await admin.connect();
      expect(await admin.exists('items:7')).toBe(1);
      admin.disconnect();
    } finally {
      await stopRedis(secured);
    }
  });

  it('reports OOM as retriable for the whole batch', async () => {
    const port = await freePort();
    const full = await startRedis(port);
    const admin = new Redis({ host: HOST, port, lazyConnect: true });
    const s = redisSink.create('full', redisSink.configSchema.parse({ host: HOST, port }), { logger });
    try {
      await admin.connect();
      await s.start();
      await admin.config('SET', 'maxmemory', '1');
      const err = await s.write([ev(1), ev(2)]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SinkError);
      expect(err).toMatchObject({ retriable: true, code: 'REDIS_OOM' });
      await admin.config('SET', 'maxmemory', '0');
      expect(await s.write([ev(1), ev(2)])).toEqual([{ ok: true }, { ok: true }]);
    } finally {
      admin.disconnect();
      await s.close();
      await stopRedis(full);
    }
  });

  it('throws a retriable SinkError while the server is down and writes again once it is back', async () => {
    const port = await freePort();
    server = await startRedis(port);
    sink = redisSink.create('fault', redisSink.configSchema.parse({ host: HOST, port, connect_timeout_ms: 1_000, command_timeout_ms: 2_000 }), { logger });
    await sink.start();
    expect(await sink.write([ev(1)])).toEqual([{ ok: true }]);

    await stopRedis(server);
    const err = await sink.write([ev(2)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkError);
    expect((err as SinkError).retriable).toBe(true);

    server = await startRedis(port);
    // The client reconnects on its own (backoff at most 2 s); the router's retrier would keep trying.
    const deadline = Date.now() + 15_000;
    let results: readonly SinkResult[] | undefined;
    while (!results) {
      try {
        results = await sink.write([ev(2)]);
      } catch (e) {
        if (!(e instanceof SinkError && e.retriable) || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    expect(results).toEqual([{ ok: true }]);
  });
});
