import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it as vitestIt } from 'vitest';
import type { ChangeEvent, Row } from '../../src/model/change-event.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { parseJsonKeepingDigits } from '../../src/model/raw-json.ts';
import { column, makeEvent, UNAVAILABLE } from '../support/events.ts';

/** What each sink's test file provides to the shared suite. */
export interface ConformanceTarget {
  /** Started, writing into a namespace of its own (schema, key prefix, index prefix). */
  readonly sink: Sink;
  /** The stored row for a key in the event's value representation, or undefined when absent. */
  read(table: string, key: Row): Promise<Row | undefined>;
  /** Number of rows stored for a table. */
  count(table: string): Promise<number>;
  /** The stored text of one column of a row (JSON text for a JSON value), as the store holds it. */
  storedText(table: string, key: Row, column: string): Promise<string | undefined>;
  /** How a row written by the sink reads back (e.g. Redis hashes store strings); identity by default. */
  readonly project?: (row: Row) => Row;
  /** Drops everything the test wrote. */
  cleanup(): Promise<void>;
}

/**
 * Every sink passes this suite against its real server. `schema` is the event-side schema name the
 * target was configured for. `skip` names the claims a kind of store cannot make, each with the
 * reason (shown in the test name); a name that matches no test fails the suite.
 */
export function describeSinkConformance(
  name: string,
  open: (schema: string) => Promise<ConformanceTarget>,
  skip: Readonly<Record<string, string>> = {},
): void {
  const seen = new Set<string>();
  const it = (title: string, fn: () => Promise<void>) => {
    seen.add(title);
    const reason = skip[title];
    if (reason === undefined) vitestIt(title, fn);
    else vitestIt.skip(`${title} (does not apply to ${name}: ${reason})`, fn);
  };
  describe(`sink conformance: ${name}`, () => {
    const schema = `conf_${randomUUID().slice(0, 8)}`;
    let t: ConformanceTarget;
    let lsn = 1000;
    const next = () => (lsn += 10);
    const project = (row: Row) => (t.project ? t.project(row) : row);

    const write = async (events: ChangeEvent[]) => {
      const results = await t.sink.write(events);
      expect(results).toHaveLength(events.length);
      for (const r of results) {
        if (!r.ok) throw r.error;
      }
    };
    const ev = (op: 'c' | 'u' | 'd' | 'r' | 't', table: string, id: number | string, after: Row | null, at = next()) =>
      makeEvent({ op, schema, table, key: { id }, after, before: op === 'd' ? { id } : null, lsn: at, columns: after ? undefined : undefined });

    beforeAll(async () => {
      t = await open(schema);
    });
    afterAll(async () => {
      await t?.cleanup();
      await t?.sink.close();
      await t?.sink.close(); // close is idempotent
    });

    it('upserts idempotently: the same batch twice gives the same state', async () => {
      const batch = [ev('c', 'items', 1, { id: 1, name: 'one' }), ev('c', 'items', 2, { id: 2, name: 'two' })];
      await write(batch);
      await write(batch);
      expect(await t.read('items', { id: 1 })).toEqual(project({ id: 1, name: 'one' }));
      expect(await t.read('items', { id: 2 })).toEqual(project({ id: 2, name: 'two' }));
    });

    it('deletes', async () => {
      await write([ev('c', 'items', 3, { id: 3, name: 'three' })]);
      await write([ev('d', 'items', 3, null)]);
      expect(await t.read('items', { id: 3 })).toBeUndefined();
    });

    it('ignores an older position after a newer one, and reports it as success', async () => {
      const older = next();
      const newer = next();
      await write([ev('u', 'items', 4, { id: 4, name: 'new' }, newer)]);
      await write([ev('u', 'items', 4, { id: 4, name: 'old' }, older)]);
      expect(await t.read('items', { id: 4 })).toEqual(project({ id: 4, name: 'new' }));
    });

    it('keeps a deleted row deleted when an older insert is replayed', async () => {
      const insertAt = next();
      const replayedAt = next();
      const deleteAt = next();
      await write([ev('c', 'items', 5, { id: 5, name: 'five' }, insertAt)]);
      await write([ev('d', 'items', 5, null, deleteAt)]);
      await write([ev('c', 'items', 5, { id: 5, name: 'zombie' }, replayedAt)]);
      expect(await t.read('items', { id: 5 })).toBeUndefined();
      // A newer insert after the delete does bring it back.
      await write([ev('c', 'items', 5, { id: 5, name: 'reborn' })]);
      expect(await t.read('items', { id: 5 })).toEqual(project({ id: 5, name: 'reborn' }));
    });

    it('coalesces changes to one key within a batch', async () => {
      await write([
        ev('c', 'items', 6, { id: 6, name: 'a' }),
        ev('u', 'items', 6, { id: 6, name: 'b' }),
        ev('u', 'items', 7, { id: 7, name: 'x' }),
        ev('u', 'items', 6, { id: 6, name: 'c' }),
      ]);
      expect(await t.read('items', { id: 6 })).toEqual(project({ id: 6, name: 'c' }));
      await write([ev('c', 'items', 8, { id: 8, name: 'gone' }), ev('d', 'items', 8, null)]);
      expect(await t.read('items', { id: 8 })).toBeUndefined();
      expect(await t.read('items', { id: 7 })).toEqual(project({ id: 7, name: 'x' }));
    });

    it('writes a 10k-record batch', async () => {
      const batch = Array.from({ length: 10_000 }, (_, i) => ev('c', 'bulk', i, { id: i, name: `row ${i}`, n: i * 2 }));
      await write(batch);
      expect(await t.count('bulk')).toBe(10_000);
      expect(await t.read('bulk', { id: 9_999 })).toEqual(project({ id: 9_999, name: 'row 9999', n: 19_998 }));
    });

    it('keeps unicode, nulls, empty strings and large values', async () => {
      const big = 'ü'.repeat(300_000);
      const row = { id: 'k-ü-☃-𝄞', text: 'héllo wörld ✓ 日本語 🎉', empty: '', missing: null, big };
      await write([ev('c', 'values', row.id, row)]);
      expect(await t.read('values', { id: row.id })).toEqual(project(row));
    });

    it('round-trips decimals and timestamps exactly', async () => {
      const columns = [
        column('id', 'int64'),
        column('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '9' }),
        column('small', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' }),
        column('at', 'int64', 'io.debezium.time.MicroTimestamp'),
        column('at_zoned', 'string', 'io.debezium.time.ZonedTimestamp'),
        column('day', 'int32', 'io.debezium.time.Date'),
      ];
      const row = {
        id: 1,
        price: '12345678901234567890.123456789',
        small: '-0.10',
        at: '1969-12-31T23:59:59.999999',
        at_zoned: '2024-02-29T23:59:59.123456Z',
        day: '0001-01-01',
      };
      await write([makeEvent({ op: 'c', schema, table: 'typed', key: { id: 1 }, after: row, lsn: next(), columns })]);
      expect(await t.read('typed', { id: 1 })).toEqual(project(row));
    });

    it('handles hostile identifiers and values', async () => {
      const hostile = '"; DROP TABLE x; --';
      const row = { id: `'); DELETE FROM x; --`, [hostile]: 'still works', 'a.b': 'dotted', 'Mixed Case': `"quoted" 'single'` };
      await write([makeEvent({ op: 'c', schema, table: 'we"ird tab;le', key: { id: row.id }, after: row, lsn: next() })]);
      expect(await t.read('we"ird tab;le', { id: row.id })).toEqual(project(row));
    });

    it('leaves the stored column intact for the unchanged-TOAST placeholder', async () => {
      const body = 'long text '.repeat(5000);
      await write([ev('c', 'docs', 1, { id: 1, title: 'v1', body })]);
      await write([ev('u', 'docs', 1, { id: 1, title: 'v2', body: UNAVAILABLE })]);
      expect(await t.read('docs', { id: 1 })).toEqual(project({ id: 1, title: 'v2', body }));
      // Within one batch too: the earlier value is carried to the coalesced write.
      await write([ev('u', 'docs', 2, { id: 2, title: 'a', body: 'fresh' }), ev('u', 'docs', 2, { id: 2, title: 'b', body: UNAVAILABLE })]);
      expect(await t.read('docs', { id: 2 })).toEqual(project({ id: 2, title: 'b', body: 'fresh' }));
    });

    it('writes every digit of the numbers in a Json column', async () => {
      // As the decoder hands over an io.debezium.data.Json column: parsed, its text kept.
      const text =
        '{"id": 9007199254740993, "amount": 0.12345678901234567890123, "count": 123456789012345678, ' +
        '"list": [9223372036854775807, -2, 3], "nested": {"big": 99999999999999999999.5}, "s": "12345678901234567890"}';
      const numbers = (t: string | undefined) => [...(t ?? '').replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/-?\d[\d.eE+-]*/g)].map((m) => m[0]).sort();
      await write([ev('c', 'jsonnum', 1, { id: 1, doc: parseJsonKeepingDigits(text) })]);
      const stored = await t.storedText('jsonnum', { id: 1 }, 'doc');
      expect(numbers(stored)).toEqual(numbers(text));
      expect(stored).toContain('"12345678901234567890"');
    });

    it('applies a truncate in order with the changes around it', async () => {
      await write([ev('c', 'trunc', 1, { id: 1, v: 'a' }), ev('c', 'trunc', 2, { id: 2, v: 'b' })]);
      await write([
        ev('c', 'trunc', 3, { id: 3, v: 'c' }),
        makeEvent({ op: 't', schema, table: 'trunc', key: null, lsn: next() }),
        ev('c', 'trunc', 4, { id: 4, v: 'd' }),
      ]);
      expect(await t.count('trunc')).toBe(1);
      expect(await t.read('trunc', { id: 4 })).toEqual(project({ id: 4, v: 'd' }));
    });

    it('keeps truncated rows out when changes from before the truncate are replayed', async () => {
      const insertAt = next();
      const updateAt = next();
      const truncateAt = next();
      await write([ev('c', 'trunc_replay', 1, { id: 1, v: 'a' }, insertAt), ev('c', 'trunc_replay', 2, { id: 2, v: 'b' }, insertAt + 1)]);
      await write([makeEvent({ op: 't', schema, table: 'trunc_replay', key: null, lsn: truncateAt })]);
      // A replay from before the truncate, in batches that stop short of it.
      await write([ev('c', 'trunc_replay', 1, { id: 1, v: 'a' }, insertAt), ev('c', 'trunc_replay', 2, { id: 2, v: 'b' }, insertAt + 1)]);
      await write([ev('u', 'trunc_replay', 1, { id: 1, v: 'a2' }, updateAt)]);
      expect(await t.read('trunc_replay', { id: 1 })).toBeUndefined();
      expect(await t.read('trunc_replay', { id: 2 })).toBeUndefined();
      expect(await t.count('trunc_replay')).toBe(0);
      // A change newer than the truncate is written.
      await write([ev('c', 'trunc_replay', 1, { id: 1, v: 'after' })]);
      expect(await t.read('trunc_replay', { id: 1 })).toEqual(project({ id: 1, v: 'after' }));
    });

    it('keeps out a row older than a truncate that arrives after it, for a key it never held', async () => {
      // A truncate and the changes before it can sit in different partitions: the truncate may be
      // written first. Such a change is stale, whether or not the store ever held its key.
      const insertAt = next();
      const truncateAt = next();
      await write([makeEvent({ op: 't', schema, table: 'trunc_late', key: null, lsn: truncateAt })]);
      await write([ev('c', 'trunc_late', 1, { id: 1, v: 'late' }, insertAt)]);
      expect(await t.read('trunc_late', { id: 1 })).toBeUndefined();
      await write([ev('c', 'trunc_late', 2, { id: 2, v: 'after' })]);
      expect(await t.read('trunc_late', { id: 2 })).toEqual(project({ id: 2, v: 'after' }));
      expect(await t.count('trunc_late')).toBe(1);
    });

    it('spares rows newer than a truncate when the truncate is replayed', async () => {
      await write([ev('c', 'trunc_again', 1, { id: 1, v: 'old' })]);
      const truncateAt = next();
      await write([makeEvent({ op: 't', schema, table: 'trunc_again', key: null, lsn: truncateAt })]);
      await write([ev('c', 'trunc_again', 2, { id: 2, v: 'new' })]);
      await write([makeEvent({ op: 't', schema, table: 'trunc_again', key: null, lsn: truncateAt })]);
      expect(await t.read('trunc_again', { id: 1 })).toBeUndefined();
      expect(await t.read('trunc_again', { id: 2 })).toEqual(project({ id: 2, v: 'new' }));
      expect(await t.count('trunc_again')).toBe(1);
    });

    const unknown = Object.keys(skip).filter((title) => !seen.has(title));
    if (unknown.length > 0) throw new Error(`conformance ${name}: skip names no test: ${unknown.join(', ')}`);
  });
}
