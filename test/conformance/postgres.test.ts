import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteIdent } from '../../connectors/postgres/identifiers.ts';
import { isRetriable, isRowError } from '../../connectors/postgres/classify.ts';
import { postgresSink } from '../../connectors/postgres/postgres-sink.ts';
import { SinkError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import type { ColumnSchema, Row } from '../../src/model/change-event.ts';
import type { Sink, SinkResult } from '../../src/sink/sink.ts';
import { column, makeEvent, UNAVAILABLE } from '../support/events.ts';
import { waitUntil } from '../support/kafka.ts';
import { describeSinkConformance } from './sink-conformance.ts';

const CONNECTION = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const logger = createLogger({ level: 'warn' });
const q = quoteIdent;

/** Reads rows back in the decoder's value representation: exact decimals, ISO timestamps, base64 bytes. */
const eventTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    switch (oid) {
      case 20: // int8
        return (v: string) => Number(v);
      case 1114: // timestamp
        return (v: string) => v.replace(' ', 'T');
      case 1184: // timestamptz (session in UTC)
        return (v: string) => v.replace(' ', 'T').replace(/\+00$/, 'Z');
      case 1082: // date
        return (v: string) => v;
      default:
        return pg.types.getTypeParser(oid, format);
    }
  },
} as pg.CustomTypesConfig;

async function adminClient(): Promise<pg.Client> {
  const c = new pg.Client({ ...CONNECTION, types: eventTypes });
  await c.connect();
  await c.query(`SET TIME ZONE 'UTC'`);
  return c;
}

async function readRow(admin: pg.Client, schema: string, table: string, key: Row): Promise<Row | undefined> {
  const keys = Object.keys(key);
  const res = await admin.query<Row>(
    `SELECT * FROM ${q(schema)}.${q(table)} WHERE ${keys.map((k, i) => `${q(k)} = $${i + 1}`).join(' AND ')}`,
    Object.values(key),
  );
  const row = res.rows[0];
  if (!row) return undefined;
  delete row['__cdc_position'];
  for (const [k, v] of Object.entries(row)) if (Buffer.isBuffer(v)) row[k] = v.toString('base64');
  return row;
}

async function count(admin: pg.Client, schema: string, table: string): Promise<number> {
  const res = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${q(schema)}.${q(table)}`);
  return res.rows[0]!.n;
}

function openSink(config: Record<string, unknown>, name = 'pg-test'): Sink {
  return postgresSink.create(name, postgresSink.configSchema.parse({ connection: CONNECTION, ...config }), { logger });
}

describeSinkConformance('postgres', async (schema) => {
  const sink = openSink({ schema: '{schema}' });
  await sink.start();
  const admin = await adminClient();
  return {
    sink,
    read: (table, key) => readRow(admin, schema, table, key),
    count: (table) => count(admin, schema, table),
    async storedText(table, key, column) {
      const keys = Object.keys(key);
      const res = await admin.query<{ v: string | null }>(
        `SELECT ${q(column)}::text AS v FROM ${q(schema)}.${q(table)} WHERE ${keys.map((k, i) => `${q(k)} = $${i + 1}`).join(' AND ')}`,
        Object.values(key),
      );
      return res.rows[0]?.v ?? undefined;
    },
    async cleanup() {
      await admin.query(`DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`);
      await admin.end();
    },
  };
});

describe('postgres sink', () => {
  const schema = `pgx_${randomUUID().slice(0, 8)}`;
  const schemas = [schema];
  const sinks: Sink[] = [];
  let admin: pg.Client;
  let sink: Sink;
  let lsn = 1_000;
  const next = () => (lsn += 10);

  const started = async (config: Record<string, unknown> = {}) => {
    const s = openSink({ schema: '{schema}', ...config });
    sinks.push(s);
    await s.start();
    return s;
  };
  const upsert = (table: string, id: unknown, after: Row, columns?: ColumnSchema[], at = next()) =>
    makeEvent({ op: 'c', schema, table, key: { id }, after, lsn: at, columns });
  const remove = (table: string, id: unknown, at = next()) => makeEvent({ op: 'd', schema, table, key: { id }, before: { id }, lsn: at });
  const allOk = (results: readonly SinkResult[]) => {
    for (const r of results) if (!r.ok) throw r.error;
  };
  const columnsOf = async (s: string, table: string) => {
    const res = await admin.query<{ name: string; type: string }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
       WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [`${q(s)}.${q(table)}`],
    );
    return Object.fromEntries(res.rows.map((r) => [r.name, r.type]));
  };

  beforeAll(async () => {
    admin = await adminClient();
    await admin.query(`CREATE SCHEMA ${q(schema)}`);
    sink = await started();
  });
  afterAll(async () => {
    for (const s of sinks) await s.close();
    for (const s of schemas) await admin?.query(`DROP SCHEMA IF EXISTS ${q(s)} CASCADE`);
    await admin?.end();
  });

  it('writes the rest of a batch when rows violate NOT NULL in an existing table, and names the bad ones', async () => {
    await admin.query(`CREATE TABLE ${q(schema)}.nn (id bigint PRIMARY KEY, name text NOT NULL, note text)`);
    // A row the sink did not write (no position): the sink's newer change replaces it.
    await admin.query(`INSERT INTO ${q(schema)}.nn (id, name, note) VALUES (5, 'old', 'pre-existing')`);
    const batch = [1, 2, 3, 4, 5].map((id) => upsert('nn', id, { id, name: id % 2 === 0 ? null : `n${id}`, note: 'x' }));
    const results = await sink.write(batch);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, false, true]);
    for (const id of [2, 4]) {
      const r = results[id - 1]!;
      if (r.ok) throw new Error('expected a failure');
      expect(r.error).toBeInstanceOf(SinkError);
      expect(r.error.retriable).toBe(false);
      expect(r.error.code).toBe('PG_23502');
      expect(r.error.message).toContain(`${q(schema)}."nn"`);
      expect(r.error.message).toContain(`{"id":${id}}`);
      expect(r.error.at?.offset).toBe(batch[id - 1]!.kafka.offset);
    }
    expect(await count(admin, schema, 'nn')).toBe(3);
    expect(await readRow(admin, schema, 'nn', { id: 5 })).toEqual({ id: 5, name: 'n5', note: 'x' });
    // The existing table got the position column and a tombstone table.
    expect((await columnsOf(schema, 'nn'))['__cdc_position']).toBe('text');
    expect(Object.keys(await columnsOf(schema, 'nn__cdc_tombstones')).sort()).toEqual(['__cdc_deleted_at', '__cdc_position', 'id']);
  });

  it('writes quotes, backslashes and array syntax exactly, and fails only the row holding a NUL character', async () => {
    const tricky = [`O'Brien`, `''`, `back\\slash \\' \\\\`, `E'x'`, `{"a":"b"}`, `a,b "c" {d}`, `$1 $$ $tag$`, `'); DROP TABLE x; --`];
    await sink.write([upsert('lit', 0, { id: 0, s: 'seed' })]); // s becomes text
    const batch = tricky.map((s, i) => upsert('lit', i + 1, { id: i + 1, s }));
    allOk(await sink.write(batch));
    for (const [i, s] of tricky.entries()) expect(await readRow(admin, schema, 'lit', { id: i + 1 })).toEqual({ id: i + 1, s });
    // A NUL cannot travel inside query text: that batch goes with bound parameters, and the server
    // refuses the NUL row alone; the connection stays usable.
    const withNul = [upsert('lit', 20, { id: 20, s: 'before' }), upsert('lit', 21, { id: 21, s: 'a\u0000b' }), upsert('lit', 22, { id: 22, s: `it's after` })];
    const results = await sink.write(withNul);
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    const bad = results[1]!;
    expect(!bad.ok && bad.error.code).toBe('PG_22021');
    expect(await readRow(admin, schema, 'lit', { id: 22 })).toEqual({ id: 22, s: `it's after` });
    allOk(await sink.write([upsert('lit', 23, { id: 23, s: 'next batch' })]));
    expect(await count(admin, schema, 'lit')).toBe(tricky.length + 4);
  });

  it('isolates a few bad values in a large batch by bisection', async () => {
    await sink.write([upsert('bisect', 0, { id: 0, n: 1 })]); // n becomes bigint
    const batch = Array.from({ length: 2_000 }, (_, i) => upsert('bisect', i, { id: i, n: i === 17 || i === 1_500 ? 'not a number' : i }));
    batch.push(upsert('bisect', 3_000, { id: 3_000, n: 2 ** 53 + 1e6 })); // beyond 2^53: a float, fine
    const results = await sink.write(batch);
    const failed = results.flatMap((r, i) => (r.ok ? [] : [i]));
    expect(failed).toEqual([17, 1_500]);
    const bad = results[17]!;
    expect(!bad.ok && bad.error.code).toBe('PG_22P02');
    expect(await count(admin, schema, 'bisect')).toBe(1_999);
  });

  it('adds columns that appear later, with types from the schema or the values', async () => {
    allOk(await sink.write([upsert('evo', 1, { id: 1, a: 'x' })]));
    const price = column('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' });
    const cols = [column('id', 'int64'), column('a', 'string'), column('b', 'int64'), price, column('doc', 'string', 'io.debezium.data.Json')];
    allOk(await sink.write([upsert('evo', 2, { id: 2, a: 'y', b: 42, price: '9.90', doc: { k: [1, 'two'] }, flag: true }, cols)]));
    expect(await columnsOf(schema, 'evo')).toMatchObject({
      id: 'bigint',
      a: 'text',
      b: 'bigint',
      price: 'numeric',
      doc: 'jsonb',
      flag: 'boolean',
    });
    expect(await readRow(admin, schema, 'evo', { id: 1 })).toEqual({ id: 1, a: 'x', b: null, price: null, doc: null, flag: null });
    expect(await readRow(admin, schema, 'evo', { id: 2 })).toEqual({ id: 2, a: 'y', b: 42, price: '9.90', doc: { k: [1, 'two'] }, flag: true });
  });

  it('fails only the rows with a new column when evolve is off', async () => {
    const fixed = await started({ evolve: false });
    allOk(await fixed.write([upsert('fixed', 1, { id: 1, a: 'x' })]));
    const results = await fixed.write([upsert('fixed', 2, { id: 2, a: 'y' }), upsert('fixed', 3, { id: 3, a: 'z', extra: 1 })]);
    expect(results[0]!.ok).toBe(true);
    const r = results[1]!;
    expect(!r.ok && r.error.code).toBe('PG_COLUMN_MISSING');
    expect(!r.ok && r.error.message).toContain('extra');
    expect(Object.keys(await columnsOf(schema, 'fixed'))).not.toContain('extra');
  });

  it('refuses tables it may not create or fix, with a clear error', async () => {
    const strict = await started({ auto_create: false, evolve: false });
    const [missing] = await strict.write([upsert('absent', 1, { id: 1 })]);
    expect(!missing!.ok && missing!.error.code).toBe('PG_TABLE_MISSING');
    expect(!missing!.ok && missing!.error.retriable).toBe(false);

    await admin.query(`CREATE TABLE ${q(schema)}.bare (id bigint PRIMARY KEY, v text)`);
    const [noPosition] = await strict.write([upsert('bare', 1, { id: 1, v: 'a' })]);
    expect(!noPosition!.ok && noPosition!.error.code).toBe('PG_NO_POSITION_COLUMN');
    expect(!noPosition!.ok && noPosition!.error.message).toContain('ALTER TABLE');

    await admin.query(`CREATE TABLE ${q(schema)}.nokey (id bigint, v text)`);
    const [noKey] = await sink.write([upsert('nokey', 1, { id: 1, v: 'a' })]);
    expect(!noKey!.ok && noKey!.error.code).toBe('PG_KEY_MISMATCH');
    expect(!noKey!.ok && noKey!.error.message).toContain('key_columns');
  });

  it('a truncate waits for a write in progress and removes its older rows too', async () => {
    const sink = await started();
    expect((await sink.write([upsert('racing', 1, { id: 1, v: 'a' })]))[0]!.ok).toBe(true);
    const older = (await admin.query<{ p: string }>(`SELECT __cdc_position AS p FROM ${q(schema)}.racing WHERE id = 1`)).rows[0]!.p;
    // Another batch (another partition) writing an older row, its transaction still open.
    const other = await adminClient();
    try {
      await other.query('BEGIN');
      await other.query(`INSERT INTO ${q(schema)}.racing (id, v, __cdc_position) VALUES (2, 'b', $1)`, [older]);
      let done = false;
      const truncating = sink.write([makeEvent({ op: 't', schema, table: 'racing', key: null, lsn: next() })]).finally(() => (done = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(done, 'the truncate waits for the open write').toBe(false);
      await other.query('COMMIT');
      expect((await truncating)[0]!.ok).toBe(true);
    } finally {
      await other.end();
    }
    expect(await count(admin, schema, 'racing')).toBe(0);
  });

  it('refuses a truncate whose watermark table it may not create, and says how to create it', async () => {
    const own = `${schema}_strict`;
    const strict = await started({ auto_create: false, evolve: false });
    try {
      await admin.query(`CREATE SCHEMA ${q(own)}`);
      await admin.query(`CREATE TABLE ${q(own)}.t (id bigint PRIMARY KEY, v text, __cdc_position text COLLATE "C")`);
      await admin.query(`CREATE TABLE ${q(own)}.t__cdc_tombstones (id bigint NOT NULL PRIMARY KEY, __cdc_position text COLLATE "C" NOT NULL, __cdc_deleted_at timestamptz NOT NULL DEFAULT now())`);
      const results = await strict.write([
        makeEvent({ op: 'c', schema: own, table: 't', key: { id: 1 }, after: { id: 1, v: 'a' }, lsn: next() }),
        makeEvent({ op: 't', schema: own, table: 't', key: null, lsn: next() }),
      ]);
      const truncate = results[1]!;
      expect(!truncate.ok && truncate.error.code).toBe('PG_NO_TRUNCATES_TABLE');
      expect(!truncate.ok && truncate.error.message).toContain('CREATE TABLE IF NOT EXISTS');
      // Created as told, the truncate goes through.
      await admin.query(`CREATE TABLE ${q(own)}.__cdc_truncates (target text PRIMARY KEY, __cdc_position text COLLATE "C" NOT NULL, truncated_at timestamptz NOT NULL DEFAULT now())`);
      const again = await strict.write([makeEvent({ op: 't', schema: own, table: 't', key: null, lsn: next() })]);
      expect(again[0]!.ok).toBe(true);
      expect((await admin.query(`SELECT count(*)::int AS n FROM ${q(own)}.t`)).rows[0].n).toBe(0);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS ${q(own)} CASCADE`);
    }
  });

  it('creates typed columns from the Debezium schema and round-trips their values', async () => {
    const cols: ColumnSchema[] = [
      column('id', 'int32'),
      column('small', 'int16'),
      column('ratio', 'float32'),
      column('score', 'float64'),
      column('ok', 'boolean'),
      column('at', 'int64', 'io.debezium.time.MicroTimestamp'),
      column('zoned', 'string', 'io.debezium.time.ZonedTimestamp'),
      column('day', 'int32', 'io.debezium.time.Date'),
      column('clock', 'int64', 'io.debezium.time.MicroTime'),
      column('uid', 'string', 'io.debezium.data.Uuid'),
      column('blob', 'bytes'),
      column('amount', 'struct', 'io.debezium.data.VariableScaleDecimal'),
      { ...column('tags', 'array'), items: column('', 'string') },
      { ...column('nums', 'array'), items: column('', 'int32') },
      column('attrs', 'map'),
    ];
    const row = {
      id: 7,
      small: -3,
      ratio: 0.5,
      score: 1.25,
      ok: false,
      at: '2024-01-02T03:04:05.123456',
      zoned: '2024-01-02T03:04:05.5Z',
      day: '2024-02-29',
      clock: '23:59:59.999999',
      uid: '0f8fad5b-d9cb-469f-a165-70867728950e',
      blob: Buffer.from([0, 1, 2, 254, 255]).toString('base64'),
      amount: '-123.4500',
      tags: ['a', 'b "quoted"', 'c,d', null, 'back\\slash', '{braces}'],
      nums: [1, 2, 3],
      attrs: { nested: { deep: true }, list: [1, 2] },
    };
    allOk(await sink.write([upsert('typed', 7, row, cols)]));
    expect(await columnsOf(schema, 'typed')).toMatchObject({
      id: 'integer',
      small: 'smallint',
      ratio: 'real',
      score: 'double precision',
      ok: 'boolean',
      at: 'timestamp without time zone',
      zoned: 'timestamp with time zone',
      day: 'date',
      clock: 'time without time zone',
      uid: 'uuid',
      blob: 'bytea',
      amount: 'numeric',
      tags: 'text[]',
      nums: 'integer[]',
      attrs: 'jsonb',
    });
    expect(await readRow(admin, schema, 'typed', { id: 7 })).toEqual(row);
    // Years outside 0001-9999 as the decoder writes them.
    allOk(await sink.write([upsert('typed', 8, { id: 8, day: '-000001-03-01', at: '+010000-01-01T00:00:00.000000' }, cols)]));
    const res = await admin.query<{ day: string; at: string }>(`SELECT day::text AS day, at::text AS at FROM ${q(schema)}.typed WHERE id = 8`);
    expect(res.rows[0]).toEqual({ day: '0002-03-01 BC', at: '10000-01-01 00:00:00' });
  });

  it('keeps a row when a delete is older than it, and keeps tombstones per key', async () => {
    const rowAt = next();
    const staleDelete = rowAt - 5;
    allOk(await sink.write([upsert('guard', 1, { id: 1, v: 'kept' }, undefined, rowAt)]));
    allOk(await sink.write([remove('guard', 1, staleDelete)]));
    expect(await readRow(admin, schema, 'guard', { id: 1 })).toEqual({ id: 1, v: 'kept' });
    // A delete of a key never written still records its tombstone: an older insert stays out.
    const deleteAt = next();
    allOk(await sink.write([remove('guard', 2, deleteAt)]));
    allOk(await sink.write([upsert('guard', 2, { id: 2, v: 'zombie' }, undefined, deleteAt - 5)]));
    expect(await readRow(admin, schema, 'guard', { id: 2 })).toBeUndefined();
  });

  it('handles hostile schema, table, column and key names, and names beyond 63 bytes', async () => {
    const hostileSchema = `${schema}"; DROP SCHEMA public; --`;
    schemas.push(hostileSchema);
    const hostile = await started({
      schema: hostileSchema,
      tables: { [`${schema}.Robert'); DROP TABLE students;--`]: { columns: { plain: `"ren'amed"; --` } } },
    });
    const table = `Robert'); DROP TABLE students;--`;
    const keyCol = `k"ey'); --`;
    const long = `c${'ü'.repeat(40)}`; // 81 bytes: the server would cut it to 63 ('c' and 31 'ü')
    const longTable = `t${'x'.repeat(70)}`;
    const row = { [keyCol]: `'; DELETE FROM x; --`, plain: 'p', [long]: 'long name', $1: 'dollar' };
    const events = [
      makeEvent({ op: 'c', schema, table, key: { [keyCol]: row[keyCol] }, after: row, lsn: next() }),
      makeEvent({ op: 'c', schema, table: longTable, key: { id: 1 }, after: { id: 1, v: 'a' }, lsn: next() }),
      makeEvent({ op: 'c', schema, table: longTable, key: { id: 2 }, after: { id: 2, v: 'b' }, lsn: next() }),
    ];
    allOk(await hostile.write(events));
    allOk(await hostile.write([makeEvent({ op: 'd', schema, table: longTable, key: { id: 2 }, before: { id: 2 }, lsn: next() })]));
    const stored = await readRow(admin, hostileSchema, table, { [keyCol]: row[keyCol] });
    expect(stored).toEqual({
      [keyCol]: row[keyCol],
      [`"ren'amed"; --`]: 'p',
      [`c${'ü'.repeat(31)}`]: 'long name',
      $1: 'dollar',
    });
    const clipped = longTable.slice(0, 63);
    expect(await count(admin, hostileSchema, clipped)).toBe(1);
    const side = await admin.query<{ relname: string }>(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname LIKE '%__cdc_tombstones' AND c.relname LIKE 'txx%'`,
      [hostileSchema],
    );
    expect(side.rows).toHaveLength(1);
    expect(side.rows[0]!.relname.length).toBeLessThanOrEqual(63);
    expect((await admin.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'public'`)).rowCount).toBe(1);
  });

  it('renames tables and columns and uses configured key columns', async () => {
    const mapped = await started({
      tables: { [`${schema}.orders`]: { table: '{table}_v2', key_columns: ['order_no'], columns: { order_no: 'number', amount: 'total' } } },
    });
    const ev = (id: number, no: string, amount: string, op: 'c' | 'd' = 'c') =>
      makeEvent({ op, schema, table: 'orders', key: { id }, after: op === 'd' ? null : { id, order_no: no, amount }, before: { id, order_no: no }, lsn: next() });
    allOk(await mapped.write([ev(1, 'A-1', '10'), ev(2, 'A-2', '20')]));
    expect(await readRow(admin, schema, 'orders_v2', { number: 'A-1' })).toEqual({ id: 1, number: 'A-1', total: '10' });
    allOk(await mapped.write([ev(2, 'A-2', '20', 'd')]));
    expect(await count(admin, schema, 'orders_v2')).toBe(1);
  });

  it('guards composite keys with tombstones', async () => {
    const ev = (op: 'c' | 'd', region: string, n: number, at: number) =>
      makeEvent({ op, schema, table: 'composite', key: { region, n }, after: op === 'd' ? null : { region, n, v: `${region}${n}` }, lsn: at });
    const insertAt = next();
    const deleteAt = next();
    allOk(await sink.write([ev('c', 'eu', 1, insertAt), ev('c', 'eu', 2, insertAt + 1), ev('c', 'us', 1, insertAt + 2)]));
    allOk(await sink.write([ev('d', 'eu', 1, deleteAt)]));
    allOk(await sink.write([ev('c', 'eu', 1, insertAt)])); // replayed: stays deleted
    expect(await readRow(admin, schema, 'composite', { region: 'eu', n: 1 })).toBeUndefined();
    expect(await count(admin, schema, 'composite')).toBe(2);
    expect(await count(admin, schema, 'composite__cdc_tombstones')).toBe(1);
  });

  it('stores NULL for an unchanged-TOAST column of a new row', async () => {
    allOk(await sink.write([upsert('toast', 1, { id: 1, title: 't', body: UNAVAILABLE })]));
    allOk(await sink.write([upsert('toast', 1, { id: 1, title: 't2', body: 'b' })]));
    allOk(await sink.write([upsert('toast', 2, { id: 2, title: 'x', body: UNAVAILABLE })]));
    expect(await readRow(admin, schema, 'toast', { id: 1 })).toEqual({ id: 1, title: 't2', body: 'b' });
    expect(await readRow(admin, schema, 'toast', { id: 2 })).toEqual({ id: 2, title: 'x', body: null });
  });

  it('ignores truncates when told to', async () => {
    const ignoring = await started({ truncate: 'ignore' });
    allOk(await ignoring.write([upsert('keep', 1, { id: 1 }), makeEvent({ op: 't', schema, table: 'keep', key: null, lsn: next() })]));
    expect(await count(admin, schema, 'keep')).toBe(1);
  });

  it('creates a table once when concurrent batches need it', async () => {
    const batches = [0, 1, 2, 3].map((b) => Array.from({ length: 50 }, (_, i) => upsert('race', b * 100 + i, { id: b * 100 + i, [`c${b}`]: b })));
    const results = await Promise.all(batches.map((batch) => sink.write(batch)));
    results.forEach(allOk);
    expect(await count(admin, schema, 'race')).toBe(200);
  });

  it('reloads its metadata when a column disappears under it', async () => {
    allOk(await sink.write([upsert('drift', 1, { id: 1, a: 'x', b: 'y' })]));
    await admin.query(`ALTER TABLE ${q(schema)}.drift DROP COLUMN b`);
    allOk(await sink.write([upsert('drift', 2, { id: 2, a: 'x2', b: 'y2' })]));
    expect(await readRow(admin, schema, 'drift', { id: 2 })).toEqual({ id: 2, a: 'x2', b: 'y2' });
  });

  it('removes tombstones older than the retention', async () => {
    allOk(await sink.write([upsert('tomb', 1, { id: 1 }), upsert('tomb', 2, { id: 2 })]));
    allOk(await sink.write([remove('tomb', 1), remove('tomb', 2)]));
    expect(await count(admin, schema, 'tomb__cdc_tombstones')).toBe(2);
    const short = await started({ tombstone_retention: '1ms', tombstone_cleanup_interval: '50ms' });
    allOk(await short.write([upsert('tomb', 3, { id: 3 })])); // the cleanup covers tables this process wrote
    await waitUntil(async () => (await count(admin, schema, 'tomb__cdc_tombstones')) === 0, 10_000, 'tombstone cleanup');
    expect(await count(admin, schema, 'tomb')).toBe(1);
  });

  it('classifies failures: unreachable server retriable, bad credentials or database permanent', async () => {
    const down = postgresSink.create('pg-down', postgresSink.configSchema.parse({ connection: { host: '127.0.0.1', port: 1 } }), { logger });
    const err = await down.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SinkError);
    expect((err as SinkError).retriable).toBe(true);
    expect((err as SinkError).code).toBe('PG_ECONNREFUSED');
    await down.close();

    const wrongDb = openSink({ connection: { ...CONNECTION, database: `missing_${schema}` } });
    const err2 = await wrongDb.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err2 as SinkError).retriable).toBe(false);
    expect((err2 as SinkError).code).toBe('PG_3D000');

    const dbError = (code: string) => Object.assign(new pg.DatabaseError('x', 0, 'error'), { code });
    expect(['08006', '40001', '40P01', '53300', '57014', '57P01', '55P03'].map((c) => isRetriable(dbError(c)))).toEqual(Array(7).fill(true));
    expect(['22P02', '23502', '23505', '42703', '42501', '28P01'].map((c) => isRetriable(dbError(c)))).toEqual(Array(6).fill(false));
    expect(isRowError(dbError('23502')) && isRowError(dbError('22001')) && !isRowError(dbError('42501'))).toBe(true);
    expect(isRetriable(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isRetriable(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isRetriable(new TypeError('bug'))).toBe(false);
  });

  it('rejects invalid configuration', () => {
    const parse = (c: Record<string, unknown>) => postgresSink.configSchema.safeParse({ connection: CONNECTION, ...c });
    expect(parse({ table: '{nope}' }).success).toBe(false);
    expect(parse({ tombstone_retention: '7 days' }).success).toBe(false);
    expect(postgresSink.configSchema.safeParse({ connection: { connection_string: 'postgres://x@y/z', host: 'h' } }).success).toBe(false);
    const ok = parse({});
    expect(ok.success && ok.data).toMatchObject({
      schema: '{schema}',
      table: '{table}',
      auto_create: true,
      evolve: true,
      truncate: 'apply',
      position_column: '__cdc_position',
      tombstone_retention: 7 * 86_400_000,
    });
  });

  it('skips stale events inside one batch across source tables mapped to one target', async () => {
    const merged = await started({ table: 'merged' });
    const a = makeEvent({ op: 'c', schema, table: 'one', key: { id: 1 }, after: { id: 1, v: 'newer' }, lsn: next() + 100 });
    const b = makeEvent({ op: 'c', schema, table: 'two', key: { id: 1 }, after: { id: 1, v: 'older' }, lsn: next() });
    allOk(await merged.write([a, b]));
    expect(await readRow(admin, schema, 'merged', { id: 1 })).toEqual({ id: 1, v: 'newer' });
  });
});
