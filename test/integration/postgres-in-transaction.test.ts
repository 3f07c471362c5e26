import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresSink } from '../../connectors/postgres/postgres-sink.ts';
import { SinkError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { postgresDatabase } from '../../src/sink/postgres-database.ts';
import type { InTransactionWriter, Sink } from '../../src/sink/sink.ts';
import { column, makeEvent } from '../support/events.ts';
import { uniqueName, waitUntil } from '../support/kafka.ts';
import { PG_URL } from '../support/stores.ts';

/**
 * The PostgreSQL sink writing inside a transaction its caller holds open (a view's state
 * transaction): its writes commit and roll back with the caller's, a row or a table it cannot
 * write fails alone and leaves the caller's transaction usable, and its table metadata recovers
 * from DDL the caller rolled back.
 */

const COLUMNS = [column('id', 'int32'), column('v', 'string')];
let lsn = 1_000;
const row = (schema: string, table: string, id: number, v: unknown, columns = COLUMNS): ChangeEvent =>
  makeEvent({ op: 'c', schema: 'src', table, key: { id }, after: { id, v, ...(columns.length > 2 ? { w: `w${id}` } : {}) }, lsn: lsn++, columns });

describe('PostgreSQL sink: writes inside the caller’s transaction', () => {
  const schema = uniqueName('sink_in_tx').replace(/-/g, '_').toLowerCase();
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
  let sink: Sink;
  let writer: InTransactionWriter;
  const q = (table: string) => `"${schema}"."${table}"`;

  beforeAll(async () => {
    sink = postgresSink.create('pg', postgresSink.configSchema.parse({ connection: { connection_string: PG_URL }, schema }), {
      logger: createLogger({ level: 'silent' }),
    });
    await sink.start();
    writer = sink.inTransaction!;
  });

  afterAll(async () => {
    await sink.close();
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  /** Runs fn in a transaction of its own connection, committed unless told to roll back. */
  async function inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>, end: 'COMMIT' | 'ROLLBACK' = 'COMMIT'): Promise<T> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query(end);
      return out;
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    } finally {
      client.release();
    }
  }

  const rows = async (table: string) => (await pool.query(`SELECT id, v FROM ${q(table)} ORDER BY id`)).rows as { id: number; v: string }[];

  it("names the database of its connection as the view state's connection string does", () => {
    expect(writer.database).toBe(postgresDatabase({ connectionString: PG_URL }));
  });

  it("commits and rolls back with the caller; a rolled-back create or add column is made again by the next write", async () => {
    await inTransaction((c) => writer.write(c, [row(schema, 'a', 1, 'x')]), 'ROLLBACK');
    expect((await pool.query(`SELECT to_regclass($1) AS t`, [`"${schema}".a`])).rows[0].t).toBeNull();
    expect(await inTransaction((c) => writer.write(c, [row(schema, 'a', 2, 'y')]))).toEqual([{ ok: true }]);
    expect(await rows('a')).toEqual([{ id: 2, v: 'y' }]);

    // A new column added in a transaction that rolls back: the next write adds it again.
    const wide = [...COLUMNS, column('w', 'string')];
    await inTransaction((c) => writer.write(c, [row(schema, 'a', 3, 'z', wide)]), 'ROLLBACK');
    expect(await inTransaction((c) => writer.write(c, [row(schema, 'a', 4, 'u', wide)]))).toEqual([{ ok: true }]);
    expect((await pool.query(`SELECT id, w FROM ${q('a')} ORDER BY id`)).rows).toEqual([
      { id: 2, w: null },
      { id: 4, w: 'w4' },
    ]);
  });

  it("a row the table refuses fails alone; the caller's own writes before and after it commit", async () => {
    await pool.query(`CREATE TABLE ${q('b')} (id int PRIMARY KEY, v int, __cdc_position text COLLATE "C")`);
    await pool.query(`CREATE TABLE ${q('mine')} (n int)`);
    const results = await inTransaction(async (c) => {
      await c.query(`INSERT INTO ${q('mine')} VALUES (1)`);
      const out = await writer.write(c, [row(schema, 'b', 1, 10), row(schema, 'b', 2, 'not a number'), row(schema, 'b', 3, 30)]);
      await c.query(`INSERT INTO ${q('mine')} VALUES (2)`);
      return out;
    });
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    expect(await rows('b')).toEqual([
      { id: 1, v: 10 },
      { id: 3, v: 30 },
    ]);
    expect((await pool.query(`SELECT n FROM ${q('mine')} ORDER BY n`)).rows).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it("a table it cannot create fails its records; the caller's transaction goes on", async () => {
    // A type of the table's name: CREATE TABLE fails (42710) in the caller's transaction.
    await pool.query(`CREATE TYPE ${q('c')} AS ENUM ('x')`);
    const results = await inTransaction(async (c) => {
      await c.query(`INSERT INTO ${q('mine')} VALUES (3)`);
      const out = await writer.write(c, [row(schema, 'c', 1, 'x')]);
      await c.query(`INSERT INTO ${q('mine')} VALUES (4)`);
      return out;
    });
    expect(results[0]).toMatchObject({ ok: false, error: { code: 'PG_42710', retriable: false } });
    expect((await pool.query(`SELECT n FROM ${q('mine')} WHERE n > 2 ORDER BY n`)).rows).toEqual([{ n: 3 }, { n: 4 }]);
  });

  it('a relation of the name that is not a table (a view) fails its records instead of creating forever', async () => {
    await pool.query(`CREATE VIEW ${q('f')} AS SELECT 1 AS id`);
    const results = await inTransaction((c) => writer.write(c, [row(schema, 'f', 1, 'x')]));
    expect(results[0]).toMatchObject({ ok: false, error: { code: 'PG_TABLE_UNUSABLE', retriable: false } });
    expect(await sink.write([row(schema, 'f', 2, 'y')])).toMatchObject([{ ok: false, error: { code: 'PG_TABLE_UNUSABLE' } }]);
  });

  it('a retriable failure rejects with a retriable SinkError, for the caller to roll back', async () => {
    await pool.query(`CREATE TABLE ${q('d')} (id int PRIMARY KEY, v text, __cdc_position text COLLATE "C")`);
    await pool.query(`CREATE FUNCTION ${q('refuse')}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'try again' USING ERRCODE = '40001'; END $$`);
    await pool.query(`CREATE TRIGGER refuse BEFORE INSERT ON ${q('d')} FOR EACH STATEMENT EXECUTE FUNCTION ${q('refuse')}()`);
    const err = await inTransaction((c) => writer.write(c, [row(schema, 'd', 1, 'x')])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkError);
    expect(err).toMatchObject({ retriable: true });
    expect(await rows('d')).toEqual([]);
  });

  it('two open transactions creating the same table at once: the second waits for the first, then both commit', async () => {
    const first = await pool.connect();
    const second = await pool.connect();
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      await writer.write(first, [row(schema, 'e', 1, 'x')]);
      const pid = (await second.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const waiting = writer.write(second, [row(schema, 'e', 2, 'y')]);
      // The second's CREATE TABLE waits on the first's uncommitted one.
      await waitUntil(async () => (await pool.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [pid])).rowCount, 10_000, 'the second write waiting');
      await first.query('COMMIT');
      expect(await waiting).toEqual([{ ok: true }]);
      await second.query('COMMIT');
    } finally {
      first.release();
      second.release();
    }
    expect(await rows('e')).toEqual([
      { id: 1, v: 'x' },
      { id: 2, v: 'y' },
    ]);
  });
});
