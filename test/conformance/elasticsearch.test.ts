import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
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
import { createDecoder } from '../../src/decode/debezium.ts';
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

/** Base64 two's-complement big-endian unscaled value, as JsonConverter writes a Connect Decimal. */
function decimalBase64(text: string, scale: number): string {
  const negative = text.startsWith('-');
  const [whole = '0', fraction = ''] = text.replace('-', '').split('.');
  let v = BigInt(whole + fraction.padEnd(scale, '0'));
  if (negative) v = -v;
  const bytes: number[] = [];
  for (;;) {
    bytes.unshift(Number(BigInt.asUintN(8, v)));
    v >>= 8n;
    const signBit = (bytes[0]! & 0x80) !== 0;
    if ((v === 0n && !signBit) || (v === -1n && signBit)) break;
  }
  return Buffer.from(bytes).toString('base64');
}

/** Counts every mapped field (properties and multi-fields, at any depth). */
function countFields(properties: Record<string, unknown> | undefined): number {
  let n = 0;
  for (const m of Object.values(properties ?? {})) {
    const field = m as { properties?: Record<string, unknown>; fields?: Record<string, unknown> };
    n += 1 + countFields(field.properties) + countFields(field.fields);
  }
  return n;
}

describe('elasticsearch sink: mapping from the Debezium schema', () => {
  const schema = `esmap_${randomUUID().slice(0, 8)}`;
  const es = new Client({ node: NODE });
  let sink: Sink;
  let lsn = 50_000;
  const next = () => (lsn += 10);

  // The all-types fixture (real Debezium 2.7 PostgreSQL output) plus the types PostgreSQL does not
  // send: nanosecond timestamps and times, a declared short string, a Connect map, a zoned timestamp
  // beyond year 9999.
  const fixture = JSON.parse(readFileSync(new URL('../fixtures/debezium/postgres/all-types.json', import.meta.url), 'utf8')) as {
    schema: { fields: { field: string; fields?: unknown[] }[] };
    payload: { after: Record<string, unknown> };
  };
  const extraFields = [
    { type: 'int64', optional: true, name: 'io.debezium.time.NanoTimestamp', version: 1, field: 'tsn' },
    { type: 'int64', optional: true, name: 'io.debezium.time.NanoTime', version: 1, field: 'tn' },
    { type: 'string', optional: true, parameters: { '__debezium.source.column.length': '12' }, field: 'code' },
    { type: 'map', optional: true, keys: { type: 'string', optional: false }, values: { type: 'string', optional: true }, field: 'attrs' },
    { type: 'string', optional: true, name: 'io.debezium.time.ZonedTimestamp', version: 1, field: 'tstz_far' },
  ];
  for (const f of fixture.schema.fields) if (f.field === 'after' || f.field === 'before') f.fields = [...(f.fields ?? []), ...extraFields];
  const baseRow = {
    ...fixture.payload.after,
    tsn: '1718454896123456789',
    tn: 45296789012345,
    code: 'A-1',
    attrs: { color: 'red' },
    tstz_far: '+10000-01-01T00:00:00Z',
  };
  const decoder = createDecoder();
  let columns: readonly ColumnSchema[] | undefined;

  /** A change decoded from the fixture's envelope with some columns replaced (Connect-encoded values). */
  function change(table: string, id: number, overrides: Record<string, unknown> = {}): ChangeEvent {
    const payload = { ...fixture.payload, after: { ...baseRow, id, ...overrides } };
    const text = JSON.stringify({ schema: fixture.schema, payload }).replace(/"tsn":"(\d+)"/, '"tsn":$1');
    const decoded = decoder.decode({ topic: 'dbserver1.public.all_types', partition: 0, offset: String(id), timestamp: Date.now(), key: Buffer.from(JSON.stringify({ id })), value: Buffer.from(text), headers: {} });
    if (decoded.kind !== 'change') throw new Error(`expected a change, got ${decoded.kind}`);
    columns ??= decoded.columns;
    return makeEvent({ op: 'c', schema, table, key: { id }, after: decoded.after, lsn: next(), columns: [...(columns ?? [])] });
  }
  /** Events of one schema share their columns array, as the decoder's do. */
  function sameSchema(events: ChangeEvent[]): ChangeEvent[] {
    const shared = events[0]?.columns;
    return events.map((e) => ({ ...e, columns: shared }));
  }

  const search = async (index: string, query: Record<string, unknown>, sort?: Record<string, unknown>[]) => {
    const res = await es.search<Row>({ index, query, size: 100, ...(sort ? { sort } : {}) });
    return res.hits.hits.map((h) => Number(h._id));
  };
  const sourceText = async (index: string, id: number) => (await fetch(`${NODE}/${encodeURIComponent(index)}/_source/${id}`)).text();

  beforeAll(async () => {
    sink = openSink({ tables: { [`${schema}.json_off`]: { json_columns: { doc: 'disabled' } } } }, 'es-map');
    await sink.start();
  });
  afterAll(async () => {
    await dropIndices(es, schema);
    await sink.close();
    await es.close();
  });

  it('types every column of a new index from the schema, and every decoded value is accepted', async () => {
    const events = sameSchema([
      change('all', 1, { doc: JSON.stringify({ nested: { arr: [1, 'two', null] } }) }),
      change('all', 2, { doc: JSON.stringify({ nested: { arr: 'x' } }) }),
      change('all', 3, {
        doc: JSON.stringify({ ...Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`key_${i}`, i % 2 ? i : `v${i}`])), long: 'é'.repeat(40_000) }),
        // Longer than a Lucene term: kept, not indexed.
        uid: 'u'.repeat(40_000),
      }),
    ]);
    expectOk(await sink.write(events));
    const index = indexOf(schema, 'all');
    const mapping = (await es.indices.getMapping({ index }))[index]?.mappings;
    expect(mapping?.dynamic).toBe('false');
    const p = (mapping?.properties ?? {}) as Record<string, Record<string, unknown>>;
    const typeOf = (f: string) => p[f]?.['type'];
    expect({
      price: typeOf('price'), amount: typeOf('amount'), birth: typeOf('birth'), ts: typeOf('ts'), ts_ms: typeOf('ts_ms'), tsn: typeOf('tsn'),
      tstz: typeOf('tstz'), ttz: typeOf('ttz'), t: typeOf('t'), tn: typeOf('tn'), iv: typeOf('iv'), dur: typeOf('dur'), uid: typeOf('uid'),
      mood: typeOf('mood'), code: typeOf('code'), raw: typeOf('raw'), bits: typeOf('bits'), doc: typeOf('doc'), attrs: typeOf('attrs'),
      tags: typeOf('tags'), prices: typeOf('prices'), dates: typeOf('dates'), ratio: typeOf('ratio'), flag: typeOf('flag'), id: typeOf('id'),
    }).toEqual({
      price: 'double', amount: 'double', birth: 'date', ts: 'date', ts_ms: 'date', tsn: 'date',
      tstz: 'date', ttz: 'date', t: 'keyword', tn: 'keyword', iv: 'keyword', dur: 'long', uid: 'keyword',
      mood: 'keyword', code: 'keyword', raw: 'binary', bits: 'binary', doc: 'flattened', attrs: 'flattened',
      tags: 'text', prices: 'double', dates: 'date', ratio: 'double', flag: 'boolean', id: 'integer',
    });
    expect(p['ts']?.['fields']).toMatchObject({ nanos: { type: 'date_nanos' } });
    expect(p['location']?.['properties']).toMatchObject({ x: { type: 'double' }, y: { type: 'double' }, wkb: { type: 'binary' }, srid: { type: 'integer' } });
    // Thousands of distinct JSON keys and mixed types: still one field.
    expect(countFields(mapping?.properties)).toBeLessThan(80);
    await es.indices.refresh({ index });
    expect(await countDocs(es, index)).toBe(3);
    expect(await search(index, { term: { 'doc.nested.arr': 'two' } })).toEqual([1]);
    expect(await search(index, { term: { 'doc.nested.arr': 'x' } })).toEqual([2]);
    expect(await search(index, { term: { 'doc.key_2999': '2999' } })).toEqual([3]);
    expect(((await readDoc(es, index, { id: 3 }))?.['doc'] as Row)['long']).toHaveLength(40_000);
    // Pre-1970, year 0, 1 BC and year 10000 values are indexed in the `date` field.
    expect(await search(index, { range: { ts_before_epoch: { lt: '1970-01-01T00:00:00.000000' } } })).toHaveLength(3);
    expect(await search(index, { range: { ts_first_ad: { lte: '0001-01-01T00:00:00.000000' } } })).toHaveLength(3);
    expect(await search(index, { range: { bc: { lt: '0000-01-01' } } })).toHaveLength(3);
    expect(await search(index, { range: { far_future: { gte: '+010000-01-01' } } })).toHaveLength(3);
    // Outside date_nanos' range: in _source and _ignored, the document written all the same.
    expect(await search(index, { term: { _ignored: 'ts_before_epoch.nanos' } }, [{ id: 'asc' }])).toEqual([1, 2, 3]);
    expect(await search(index, { term: { _ignored: 'tstz_far' } }, [{ id: 'asc' }])).toEqual([1, 2, 3]);
    expect(await search(index, { term: { _ignored: 'ts.nanos' } })).toEqual([]);
    expect(await readDoc(es, index, { id: 1 })).toMatchObject({ ts_before_epoch: '1969-12-31T23:59:59.999999', tstz_far: '+10000-01-01T00:00:00Z', far_future: '+010000-01-01' });
  });

  it('compares decimals as numbers and keeps their exact text', async () => {
    const prices = ['9.500', '9.501', '50.000', '100.250', '100.251', '-3.000', '1000.000'];
    const big = '1234567890123456789012345678.1234567891';
    const events = sameSchema(prices.map((v, i) => change('prices', i + 1, { price: decimalBase64(v, 3), big: decimalBase64(big, 10) })));
    expectOk(await sink.write(events));
    const index = indexOf(schema, 'prices');
    await es.indices.refresh({ index });
    const ids = await search(index, { range: { price: { gt: 9.5, lte: 100.25 } } }, [{ price: 'asc' }]);
    expect(ids).toEqual([2, 3, 4]);
    expect(await search(index, { range: { price: { lt: 0 } } })).toEqual([6]);
    const agg = await es.search({ index, size: 0, aggs: { max: { max: { field: 'price' } } } });
    expect((agg.aggregations?.['max'] as { value: number }).value).toBe(1000);
    // More digits than a double holds: exact in _source.
    expect(await sourceText(index, 1)).toContain(`"big":"${big}"`);
    expect(await sourceText(index, 4)).toContain('"price":"100.250"');
  });

  it('range-queries micro and nano timestamps at their precision', async () => {
    const micro = 1718454896123456;
    const nano = 1718454896123456789n;
    const events = sameSchema(
      [0, 1, 2].map((i) => change('instants', i + 1, { ts: micro + i, tsn: `${nano + BigInt(i)}` })),
    );
    expectOk(await sink.write(events));
    const index = indexOf(schema, 'instants');
    await es.indices.refresh({ index });
    const stored = await readDoc(es, index, { id: 2 });
    expect(stored).toMatchObject({ ts: '2024-06-15T12:34:56.123457', tsn: '2024-06-15T12:34:56.123456790' });
    expect(await search(index, { range: { 'ts.nanos': { gt: '2024-06-15T12:34:56.123456' } } }, [{ 'ts.nanos': 'asc' }])).toEqual([2, 3]);
    expect(await search(index, { range: { 'tsn.nanos': { gte: '2024-06-15T12:34:56.123456790', lt: '2024-06-15T12:34:56.123456791' } } })).toEqual([2]);
    // The `date` field itself: millisecond precision.
    expect(await search(index, { range: { ts: { gte: '2024-06-15T12:34:56.123', lt: '2024-06-15T12:34:56.124' } } })).toHaveLength(3);
    // Times of day sort as text.
    const times = sameSchema([change('times', 1, { t: 36000000000 }), change('times', 2, { t: 0 }), change('times', 3, { t: 86400000000 }), change('times', 4, { t: 3600000001 })]);
    expectOk(await sink.write(times));
    await es.indices.refresh({ index: indexOf(schema, 'times') });
    expect(await search(indexOf(schema, 'times'), { match_all: {} }, [{ t: 'asc' }])).toEqual([2, 4, 1, 3]);
  });

  it('maps a Json column as configured: disabled takes any JSON value; flattened refuses a bare scalar, naming the field', async () => {
    const scalar = JSON.stringify(5);
    expectOk(await sink.write(sameSchema([change('json_off', 1, { doc: scalar }), change('json_off', 2, { doc: JSON.stringify([1, 'a', { b: null }]) })])));
    const off = indexOf(schema, 'json_off');
    const mapping = (await es.indices.getMapping({ index: off }))[off]?.mappings.properties;
    expect(mapping?.['doc']).toEqual({ type: 'object', enabled: false });
    expect(await readDoc(es, off, { id: 2 })).toMatchObject({ doc: [1, 'a', { b: null }] });

    const results = await sink.write(sameSchema([change('json_on', 1, { doc: scalar }), change('json_on', 2, { doc: '{"a":1}' })]));
    expect(results[1]).toEqual({ ok: true });
    expect(results[0]).toMatchObject({ ok: false, error: { retriable: false } });
    expect(!results[0]?.ok && results[0]?.error.message).toMatch(/\[doc\] of type \[flattened\]/);
  });

  it('adds a column that appears later from its schema before writing it', async () => {
    const col = (name: string, type: string, semantic?: string, parameters?: Record<string, string>): ColumnSchema => ({ name, type, semantic, optional: true, parameters, items: undefined });
    const v1 = [col('id', 'int32'), col('name', 'string')];
    const v2 = [...v1, col('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' }), col('seen', 'int64', 'io.debezium.time.MicroTimestamp')];
    const at = (id: number, after: Row, cols: ColumnSchema[]) => makeEvent({ op: 'c', schema, table: 'evolving', key: { id }, after: { id, ...after }, lsn: next(), columns: cols });
    expectOk(await sink.write([at(1, { name: 'a' }, v1)]));
    // One batch with both schemas: the new columns are mapped before the write.
    expectOk(await sink.write([at(2, { name: 'b' }, v1), at(3, { name: 'c', price: '12.50', seen: '2024-06-15T10:00:00.000001' }, v2), at(4, { name: 'd', price: '7.25', seen: '2024-06-15T10:00:00.000002' }, v2)]));
    const index = indexOf(schema, 'evolving');
    const p = (await es.indices.getMapping({ index }))[index]?.mappings.properties as Record<string, { type?: string }>;
    expect(p['price']?.type).toBe('double');
    expect(p['seen']?.type).toBe('date');
    await es.indices.refresh({ index });
    expect(await search(index, { range: { price: { gt: 10 } } })).toEqual([3]);
  });

  it('refuses a schema that an existing index maps incompatibly, once per index and schema, naming field and both types', async () => {
    const index = indexOf(schema, 'conflicting');
    // What dynamic mapping made of decimals as text and of a mixed JSON array.
    await es.indices.create({
      index,
      settings: { number_of_replicas: 0 },
      mappings: { properties: { price: { type: 'text' }, doc: { properties: { nested: { properties: { arr: { type: 'long' } } } } } } },
    });
    const statsBefore = await es.indices.stats({ index, metric: 'indexing' });
    const events = sameSchema([change('conflicting', 1), change('conflicting', 2), change('conflicting', 3)]);
    const results = await sink.write(events);
    for (const r of results) {
      expect(r).toMatchObject({ ok: false, error: { retriable: false, code: 'MAPPING_CONFLICT' } });
    }
    const message = !results[0]?.ok ? results[0]?.error.message : '';
    expect(message).toContain('field [price] is mapped as [text] but its column needs [double]');
    expect(message).toContain('field [doc] is mapped as [object] but its column needs [flattened]');
    // Nothing was sent: no per-record 400s.
    expect(await sink.write([events[0]!])).toMatchObject([{ ok: false, error: { code: 'MAPPING_CONFLICT' } }]);
    const statsAfter = await es.indices.stats({ index, metric: 'indexing' });
    expect(statsAfter._all.primaries?.indexing?.index_failed).toBe(statsBefore._all.primaries?.indexing?.index_failed);
    expect(await countDocs(es, index)).toBe(0);
  });

  it('maps dynamically an index made from changes without a schema (schemas.enable=false)', async () => {
    expectOk(await sink.write([makeEvent({ op: 'c', schema, table: 'schemaless', key: { id: 1 }, after: { id: 1, name: 'x', n: 2 }, lsn: next() })]));
    const index = indexOf(schema, 'schemaless');
    const mapping = (await es.indices.getMapping({ index }))[index]?.mappings;
    expect(mapping?.dynamic).toBeUndefined();
    expect((mapping?.properties?.['n'] as { type?: string }).type).toBe('long');
  });

  it('types the fields of a dynamic index from a schema that arrives later, and names a real conflict', async () => {
    const col = (name: string, type: string): ColumnSchema => ({ name, type, semantic: undefined, optional: true, parameters: undefined, items: undefined });
    const at = (table: string, id: number, after: Row, columns?: ColumnSchema[]) =>
      makeEvent({ op: 'c', schema, table, key: { id }, after: { id, ...after }, lsn: next(), ...(columns ? { columns } : {}) });
    // A text column whose first value looks like a date stays text: later values need not be dates.
    const columns = [col('id', 'int32'), col('seen', 'string'), col('n', 'int32')];
    expectOk(await sink.write([at('mixed', 1, { seen: '2024-06-15T10:00:00Z', n: 1 })]));
    expectOk(await sink.write([at('mixed', 2, { seen: 'not a date', n: 2, extra: 'x' }, columns), at('mixed', 3, { seen: '2024-06-16', n: 3 })]));
    const index = indexOf(schema, 'mixed');
    expect(await countDocs(es, index)).toBe(3);
    // A field that dynamic mapping typed from a value its schema's column cannot have.
    expectOk(await sink.write([at('clash', 1, { n: 'abc' })]));
    const [clash] = await sink.write([at('clash', 2, { n: 5 }, columns)]);
    expect(clash).toMatchObject({ ok: false, error: { retriable: false, code: 'MAPPING_CONFLICT' } });
    expect(!clash?.ok && clash?.error.message).toContain('field [n] is mapped as [text] but its column needs [integer]');
  });
});
