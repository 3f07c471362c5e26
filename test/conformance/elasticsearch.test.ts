import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { Client, errors } from '@elastic/elasticsearch';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema, documentId, elasticsearchSink, indexNameFor } from '../../connectors/elasticsearch/elasticsearch-sink.ts';
import { escapeIndexPart } from '../../connectors/elasticsearch/naming.ts';
import { SinkError } from '../../src/errors.ts';
import type { ChangeEvent, ColumnSchema, Row, TableId } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import type { Sink, SinkResult } from '../../src/sink/sink.ts';
import { objectMemberSpans } from '../../src/decode/json-scan.ts';
import { describeSinkConformance } from './sink-conformance.ts';
import { makeEvent, UNAVAILABLE } from '../support/events.ts';

const NODE = process.env['ES_URL'] ?? 'http://127.0.0.1:9200';
const TEMPLATE = '{schema}.{table}';
const logger = pino({ level: 'silent' });

const tableId = (schema: string, table: string): TableId => ({ id: `${schema}.${table}`, db: 'shop', schema, table });
const indexOf = (schema: string, table: string) => indexNameFor(TEMPLATE, tableId(schema, table));
const idOf = (key: Row) => {
  const r = documentId(key);
  if ('error' in r) throw new Error(r.error);
  return r.id;
};

function openSink(extra: Record<string, unknown> = {}, name = 'es-test'): Sink {
  const config = configSchema.parse({ nodes: [NODE], index_template: TEMPLATE, ...extra });
  return elasticsearchSink.create(name, config, { logger });
}

async function readDoc(es: Client, index: string, key: Row): Promise<Row | undefined> {
  try {
    const res = await es.get<Row>({ index, id: idOf(key) });
    return res._source;
  } catch (err) {
    if (err instanceof errors.ResponseError && err.statusCode === 404) return undefined;
    throw err;
  }
}

async function countDocs(es: Client, index: string): Promise<number> {
  try {
    await es.indices.refresh({ index });
    return (await es.count({ index })).count;
  } catch (err) {
    if (err instanceof errors.ResponseError && err.statusCode === 404) return 0;
    throw err;
  }
}

/** Deletes by name: wildcard deletes are refused (action.destructive_requires_name). */
async function dropIndices(es: Client, schema: string): Promise<void> {
  const rows = await es.cat.indices({ index: `${escapeIndexPart(schema)}.*`, format: 'json', h: 'index' });
  const names = rows.map((r) => r.index).filter((n): n is string => typeof n === 'string');
  if (names.length > 0) await es.indices.delete({ index: names });
}

function expectOk(results: readonly SinkResult[]): void {
  for (const r of results) if (!r.ok) throw r.error;
}

describeSinkConformance('elasticsearch', async (schema) => {
  const es = new Client({ node: NODE });
  const sink = openSink();
  await sink.start();
  return {
    sink,
    read: (table, key) => readDoc(es, indexOf(schema, table), key),
    count: (table) => countDocs(es, indexOf(schema, table)),
    async storedText(table, key, column) {
      // The response's own text: the client would parse _source with JSON.parse.
      const res = await fetch(`${NODE}/${encodeURIComponent(indexOf(schema, table))}/_source/${encodeURIComponent(idOf(key))}`);
      if (res.status === 404) return undefined;
      const text = await res.text();
      const span = objectMemberSpans(text)?.get(column);
      return span ? text.slice(span.start, span.end) : undefined;
    },
    async cleanup() {
      await dropIndices(es, schema);
      await es.close();
    },
  };
});

describe('elasticsearch sink: naming', () => {
  it('escapes hostile names deterministically and keeps them legal', () => {
    const t = (schema: string, table: string) => indexNameFor(TEMPLATE, tableId(schema, table));
    expect(t('Public', 'Orders')).toBe('public.orders');
    expect(t('s', 'we"ird tab;le')).toBe('s.we%22ird%20tab;le');
    expect(t('s', 'a/b\\c*d?e<f>g|h,i#j:k%l')).toBe('s.a%2fb%5cc%2ad%3fe%3cf%3eg%7ch%2ci%23j%3ak%25l');
    expect(t('_sys', 'x')).toBe('%5fsys.x');
    expect(t('-a', 'x')).toBe('%2da.x');
    expect(indexNameFor('{table}', tableId('s', '.hidden'))).toBe('%2ehidden');
    expect(indexNameFor('{table}', tableId('s', '+'))).toBe('%2b');
    const long = t('s', 'x'.repeat(400));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(255);
    expect(long).toBe(t('s', 'x'.repeat(400)));
    expect(long).not.toBe(t('s', 'x'.repeat(401)));
    // MySQL: no schema, the database stands in.
    expect(indexNameFor(TEMPLATE, { id: 'shop.items', db: 'shop', schema: undefined, table: 'items' })).toBe('shop.items');
  });

  it('builds unambiguous document ids', () => {
    expect(idOf({ id: 42 })).toBe('42');
    expect(idOf({ id: 'a|b' })).toBe('a|b');
    expect(idOf({ a: 'x|y', b: 'z' })).toBe('x\\|y|z');
    expect(idOf({ a: 'x', b: 'y|z' })).toBe('x|y\\|z');
    expect(idOf({ a: 'x\\', b: 'y' })).toBe('x\\\\|y');
    expect(idOf({ a: null, b: 1 })).toBe('\\N|1');
    expect(idOf({ a: '\\N', b: 1 })).toBe('\\\\N|1');
    expect(documentId({ id: null })).toEqual({ error: 'the key column is null' });
    expect(documentId({ id: 'x'.repeat(513) })).toHaveProperty('error');
    expect(documentId(null)).toHaveProperty('error');
  });

  it('validates the config', () => {
    expect(configSchema.safeParse({ nodes: [NODE], index_template: '{schema}' }).success).toBe(false);
    expect(configSchema.safeParse({ nodes: [NODE], index_template: 'CDC-{table}' }).success).toBe(false);
    expect(configSchema.safeParse({ nodes: [NODE], index_template: 'cdc:{table}' }).success).toBe(false);
    expect(configSchema.safeParse({ nodes: [NODE], tombstone_retention: '7 days' }).success).toBe(false);
    const c = configSchema.parse({ nodes: NODE });
    expect(c).toMatchObject({
      nodes: [NODE],
      index_template: '{schema}.{table}',
      number_of_replicas: 0,
      tombstone_retention: '7d',
      truncate: 'apply',
      max_docs_per_request: 2000,
      max_concurrent_requests: 2,
      max_bytes_per_request: 10 * 1024 * 1024,
    });
  });
});

describe('elasticsearch sink: specifics', () => {
  const schema = `es_${randomUUID().slice(0, 8)}`;
  const es = new Client({ node: NODE });
  let sink: Sink;
  let lsn = 10_000;
  const next = () => (lsn += 10);
  const ev = (op: 'c' | 'u' | 'd', table: string, key: Row, after: Row | null, at: number | bigint = next()): ChangeEvent =>
    makeEvent({ op, schema, table, key, after, before: op === 'd' ? key : null, lsn: at });

  beforeAll(async () => {
    sink = openSink({ tombstone_retention: '3d', tables: { [`${schema}.mapped`]: { mapping: { n: { type: 'long' } } } } });
    await sink.start();
  });
  afterAll(async () => {
    await dropIndices(es, schema);
    await sink.close();
    await es.close();
  });

  it('creates indices with the tombstone retention as gc_deletes and 0 replicas', async () => {
    expectOk(await sink.write([ev('c', 'settings', { id: 1 }, { id: 1 })]));
    const index = indexOf(schema, 'settings');
    const res = await es.indices.getSettings({ index, flat_settings: true });
    expect(res[index]?.settings).toMatchObject({ 'index.gc_deletes': '3d', 'index.number_of_replicas': '0' });
  });

  it('fails only the record that breaks the mapping, permanently, naming table and key', async () => {
    const results = await sink.write([
      ev('c', 'mapped', { id: 1 }, { id: 1, n: 1 }),
      ev('c', 'mapped', { id: 2 }, { id: 2, n: 'not a number' }),
      ev('c', 'mapped', { id: 3 }, { id: 3, n: 3 }),
    ]);
    expect(results[0]).toEqual({ ok: true });
    expect(results[2]).toEqual({ ok: true });
    const bad = results[1];
    expect(bad?.ok).toBe(false);
    if (bad && !bad.ok) {
      expect(bad.error).toBeInstanceOf(SinkError);
      expect(bad.error.retriable).toBe(false);
      expect(bad.error.code).toBe('ES_ITEM_400');
      expect(bad.error.message).toContain(`${schema}.mapped`);
      expect(bad.error.message).toContain('[2]');
      expect(bad.error.message).toMatch(/\[n\]/);
    }
    expect(await readDoc(es, indexOf(schema, 'mapped'), { id: 3 })).toEqual({ id: 3, n: 3 });
    expect(await readDoc(es, indexOf(schema, 'mapped'), { id: 2 })).toBeUndefined();
  });

  it('types the fields of an index it creates from the Debezium schema: a double column takes 1e300 after 0.5', async () => {
    const col = (name: string, type: string, semantic?: string): ColumnSchema => ({ name, type, semantic, optional: true, parameters: undefined, items: undefined });
    const columns = [
      col('id', 'int32'),
      col('score', 'double'),
      col('ratio', 'float'),
      col('big', 'int64'),
      col('flag', 'boolean'),
      col('created', 'int64', 'io.debezium.time.MicroTimestamp'),
      col('name', 'string'),
    ];
    const typed = (id: number, after: Row) =>
      makeEvent({ op: 'c', schema, table: 'typed', key: { id }, after: { id, ...after }, lsn: next(), columns });
    expectOk(await sink.write([typed(1, { score: 0.5, ratio: 0.25, big: 1, flag: true, created: '2024-06-15T10:34:56.123457', name: 'a' })]));
    expectOk(await sink.write([typed(2, { score: 1e300, ratio: 1.5, big: 9_007_199_254_740_993n, flag: false, created: '2024-06-16T00:00:00', name: 'b' })]));
    const index = indexOf(schema, 'typed');
    const mapping = await es.indices.getMapping({ index });
    const properties = mapping[index]?.mappings.properties ?? {};
    const types = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, (v as { type?: string }).type]));
    // Plain numbers and booleans from the schema; the rest (ISO timestamps, strings) mapped dynamically.
    expect(types).toMatchObject({ id: 'integer', score: 'double', ratio: 'float', big: 'long', flag: 'boolean', created: 'date', name: 'text' });
    expect(await readDoc(es, index, { id: 2 })).toMatchObject({ score: 1e300, big: '9007199254740993' });
  });

  it('writes into an index created beforehand, keeping its mapping', async () => {
    const index = indexOf(schema, 'precreated');
    await es.indices.create({ index, settings: { number_of_replicas: 0 }, mappings: { properties: { n: { type: 'long' } } } });
    const results = await sink.write([ev('c', 'precreated', { id: 1 }, { id: 1, n: 'abc' }), ev('c', 'precreated', { id: 2 }, { id: 2, n: 2 })]);
    expect(results[0]?.ok).toBe(false);
    expect(results[1]).toEqual({ ok: true });
  });

  it('fails records whose key cannot be an _id or whose position has no version, and writes the rest', async () => {
    const multiPart = { ...ev('c', 'keys', { id: 3 }, { id: 3 }), position: position('mysql', [1n, 2n, 3n]) };
    const results = await sink.write([
      ev('c', 'keys', { id: 'x'.repeat(600) }, { id: 'long' }),
      ev('c', 'keys', { id: 2 }, { id: 2 }),
      multiPart,
      ev('c', 'keys', { a: 'p|q', b: 'r' }, { a: 'p|q', b: 'r' }),
    ]);
    expect(results.map((r) => r.ok)).toEqual([false, true, false, true]);
    expect(results[2]?.ok === false && results[2].error.code).toBe('POSITION_NOT_A_VERSION');
    expect(await readDoc(es, indexOf(schema, 'keys'), { a: 'p|q', b: 'r' })).toEqual({ a: 'p|q', b: 'r' });
  });

  it('serializes versions above 2^53 exactly', async () => {
    const base = 1n << 60n;
    // As doubles, base+1 and base+2 are equal: a rounded version would refuse the newer write.
    expectOk(await sink.write([ev('u', 'big', { id: 1 }, { id: 1, v: 'old' }, base + 1n)]));
    expectOk(await sink.write([ev('u', 'big', { id: 1 }, { id: 1, v: 'new' }, base + 2n)]));
    expectOk(await sink.write([ev('u', 'big', { id: 1 }, { id: 1, v: 'older' }, base + 1n)]));
    expect(await readDoc(es, indexOf(schema, 'big'), { id: 1 })).toEqual({ id: 1, v: 'new' });
  });

  it('fills unchanged-TOAST columns from the stored document, and leaves them out of a new one', async () => {
    const at = next();
    expectOk(await sink.write([ev('u', 'toast', { id: 1 }, { id: 1, title: 'fresh', body: UNAVAILABLE })]));
    expect(await readDoc(es, indexOf(schema, 'toast'), { id: 1 })).toEqual({ id: 1, title: 'fresh' });
    // A stale partial change is refused like any other stale write.
    expectOk(await sink.write([ev('u', 'toast', { id: 1 }, { id: 1, title: 'stale', body: UNAVAILABLE }, at)]));
    expect(await readDoc(es, indexOf(schema, 'toast'), { id: 1 })).toEqual({ id: 1, title: 'fresh' });
    expectOk(await sink.write([ev('u', 'toast', { id: 2 }, { id: 2, title: 'a', body: 'big' })]));
    expectOk(await sink.write([ev('u', 'toast', { id: 2 }, { id: 2, title: 'b', body: UNAVAILABLE }), ev('u', 'toast', { id: 3 }, { id: 3, title: 'c', body: 'x' })]));
    expect(await readDoc(es, indexOf(schema, 'toast'), { id: 2 })).toEqual({ id: 2, title: 'b', body: 'big' });
    // A partial change after a delete does not bring back the old column.
    expectOk(await sink.write([ev('d', 'toast', { id: 2 }, null)]));
    expectOk(await sink.write([ev('u', 'toast', { id: 2 }, { id: 2, title: 'c', body: UNAVAILABLE })]));
    expect(await readDoc(es, indexOf(schema, 'toast'), { id: 2 })).toEqual({ id: 2, title: 'c' });
  });

  it('truncates with versioned deletes: newer documents stay, replayed older inserts stay out', async () => {
    const [a, t, b] = [next(), next(), next()];
    expectOk(await sink.write([ev('c', 'trunc', { id: 1 }, { id: 1 }, a), ev('c', 'trunc', { id: 2 }, { id: 2 }, b)]));
    expectOk(await sink.write([makeEvent({ op: 't', schema, table: 'trunc', key: null, lsn: t })]));
    const index = indexOf(schema, 'trunc');
    expect(await readDoc(es, index, { id: 1 })).toBeUndefined();
    expect(await readDoc(es, index, { id: 2 })).toEqual({ id: 2 });
    expectOk(await sink.write([ev('c', 'trunc', { id: 1 }, { id: 1, zombie: true }, a + 1)]));
    expect(await readDoc(es, index, { id: 1 })).toBeUndefined();
    expect(await countDocs(es, index)).toBe(1);
    // A truncate of a table never written to is a no-op.
    expectOk(await sink.write([makeEvent({ op: 't', schema, table: 'never', key: null, lsn: next() })]));
  });

  it('ignores truncates when configured to', async () => {
    const ignoring = openSink({ truncate: 'ignore' }, 'es-ignore');
    await ignoring.start();
    try {
      expectOk(await ignoring.write([ev('c', 'kept', { id: 1 }, { id: 1 }), makeEvent({ op: 't', schema, table: 'kept', key: null, lsn: next() })]));
      expect(await countDocs(es, indexOf(schema, 'kept'))).toBe(1);
    } finally {
      await ignoring.close();
    }
  });

  it('reports an unreachable cluster as retriable', async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const address = srv.address();
        srv.close(() => resolve(typeof address === 'object' && address ? address.port : 1));
      });
    });
    const down = openSink({ nodes: [`http://127.0.0.1:${port}`], max_retries: 0, request_timeout_ms: 2000 }, 'es-down');
    const err: unknown = await down.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SinkError);
    expect((err as SinkError).retriable).toBe(true);
    await expect(down.write([ev('c', 'x', { id: 1 }, { id: 1 })])).rejects.toMatchObject({ code: 'NOT_STARTED', retriable: false });
    await down.close();
  });
});

/**
 * Answers that a healthy single-node server does not give on demand: a bulk refused as a whole (400)
 * because of one action, per-item throttling (429), and a request-level 503.
 */
describe('elasticsearch sink: failure classification against a scripted server', () => {
  let server: Server;
  let node = '';
  let bulkRequests = 0;
  let unavailable = false;

  beforeAll(async () => {
    server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        const send = (status: number, payload: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
          res.end(JSON.stringify(payload));
        };
        const url = req.url ?? '';
        if (url.startsWith('/_cluster/health')) return send(200, { cluster_name: 'scripted', status: 'green' });
        if (req.method === 'PUT') return send(200, { acknowledged: true });
        if (url.startsWith('/_bulk')) {
          bulkRequests++;
          if (unavailable) return send(503, { error: { type: 'unavailable_shards_exception', reason: 'primary shard is not active' }, status: 503 });
          const lines = body.split('\n').filter(Boolean);
          if (lines.some((l) => l.includes('poison'))) {
            return send(400, { error: { type: 'action_request_validation_exception', reason: 'Validation Failed: 1: poison;' }, status: 400 });
          }
          const items = [];
          for (let i = 0; i < lines.length; i += 2) {
            const throttled = lines[i + 1]?.includes('throttle');
            items.push({
              index: throttled ? { status: 429, error: { type: 'es_rejected_execution_exception', reason: 'rejected execution' } } : { status: 201 },
            });
          }
          return send(200, { errors: items.some((it) => it.index.status !== 201), items });
        }
        send(404, { error: { type: 'not_found', reason: url }, status: 404 });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    node = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const ev = (id: number, v: string) => makeEvent({ op: 'c', schema: 's', table: 't', key: { id }, after: { id, v }, lsn: 100 + id });

  it('bisects a bulk refused as a whole down to the offending record', async () => {
    const sink = openSink({ nodes: [node], max_retries: 0 }, 'es-scripted');
    await sink.start();
    try {
      bulkRequests = 0;
      const batch = Array.from({ length: 16 }, (_, i) => ev(i, i === 11 ? 'poison' : 'fine'));
      const results = await sink.write(batch);
      expect(results.filter((r) => !r.ok)).toHaveLength(1);
      const bad = results[11];
      expect(bad?.ok).toBe(false);
      if (bad && !bad.ok) {
        expect(bad.error.retriable).toBe(false);
        expect(bad.error.message).toContain('s.t key [11]');
      }
      // 1 whole + 2·log2(16) halves, not one request per record.
      expect(bulkRequests).toBeLessThanOrEqual(9);
    } finally {
      await sink.close();
    }
  });

  it('marks throttled items retriable and a 503 for the whole request as a retriable throw', async () => {
    const sink = openSink({ nodes: [node], max_retries: 0 }, 'es-scripted');
    await sink.start();
    try {
      const results = await sink.write([ev(1, 'fine'), ev(2, 'throttle')]);
      expect(results[0]).toEqual({ ok: true });
      expect(results[1]).toMatchObject({ ok: false, error: { retriable: true, code: 'ES_ITEM_429' } });
      unavailable = true;
      await expect(sink.write([ev(3, 'fine')])).rejects.toMatchObject({ retriable: true, code: 'ES_HTTP_503' });
    } finally {
      unavailable = false;
      await sink.close();
    }
  });
});
