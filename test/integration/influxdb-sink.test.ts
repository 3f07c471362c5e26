import { afterAll, describe, expect, it } from 'vitest';
import { influxdbSink } from '../../connectors/influxdb/influxdb-sink.ts';
import { SinkError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import type { ChangeEvent, Row } from '../../src/model/change-event.ts';
import type { Sink, SinkResult } from '../../src/sink/sink.ts';
import { column, makeEvent, UNAVAILABLE } from '../support/events.ts';
import { dropDatabase, INFLUX_URL, influxQuery, parseCsv, selectPoints } from '../support/influxdb.ts';
import { uniqueName } from '../support/kafka.ts';

/**
 * The InfluxDB sink against the real server of scripts/influxdb.sh: what it writes reads back
 * exactly (hostile names, int64, decimals, timestamps), updates overwrite their point, deletes and
 * truncates do what the config says, and refused lines fail permanently with InfluxDB's message.
 */

const logger = createLogger({ level: 'error' });
const databases: string[] = [];
const sinks: Sink[] = [];

async function openSink(options: Record<string, unknown>): Promise<{ sink: Sink; db: string }> {
  const db = uniqueName('cdc_it_influx').replace(/-/g, '_');
  databases.push(db);
  const config = influxdbSink.configSchema.parse({ url: INFLUX_URL, database: db, ...options });
  const sink = influxdbSink.create('influx', config, { logger });
  sinks.push(sink);
  await sink.start();
  return { sink, db };
}

function assertOk(results: readonly SinkResult[]): void {
  for (const r of results) if (!r.ok) throw r.error;
}

let lsn = 100;
const ev = (op: 'c' | 'u' | 'd' | 'r' | 't', table: string, key: Row, after: Row | null, extra: { columns?: ReturnType<typeof column>[]; before?: Row } = {}): ChangeEvent =>
  makeEvent({ op, schema: 'public', table, key, after, before: extra.before ?? null, lsn: (lsn += 10), columns: extra.columns });

const metricColumns = [column('host', 'string'), column('ts', 'int64', 'io.debezium.time.MicroTimestamp'), column('value', 'double'), column('n', 'int64')];

afterAll(async () => {
  for (const s of sinks) await s.close();
  for (const db of databases) await dropDatabase(db).catch(() => undefined);
});

describe('InfluxDB sink on a real InfluxDB 1.x', () => {
  it('creates the database and retention policy when missing, and writes into that policy', async () => {
    const { sink, db } = await openSink({ retention_policy: 'cdc week', retention_duration: '7d', timestamp_column: 'ts' });
    const policies = parseCsv(await influxQuery(`SHOW RETENTION POLICIES ON "${db}"`));
    expect(policies.some((r) => r.includes('cdc week') && r.includes('168h0m0s'))).toBe(true);
    const nowMs = Date.now();
    const recent = new Date(nowMs).toISOString().replace('Z', '001');
    assertOk(await sink.write([ev('c', 'metrics', { host: 'a', ts: recent }, { host: 'a', ts: recent, value: 1.5 }, { columns: metricColumns })]));
    const points = await selectPoints('SELECT * FROM "cdc week"."metrics"', db);
    expect(points).toEqual([{ measurement: 'metrics', time: `${BigInt(nowMs) * 1_000_000n + 1_000n}`, values: { host: 'a', value: '1.5' } }]);
    // A point older than the policy keeps is refused for good (InfluxDB: "points beyond retention policy").
    const old = '2023-11-14T22:13:20.000001';
    await expect(sink.write([ev('c', 'metrics', { host: 'a', ts: old }, { host: 'a', ts: old, value: 1 }, { columns: metricColumns })])).rejects.toMatchObject({
      retriable: false,
      code: 'INFLUX_PARTIAL_WRITE',
      message: expect.stringMatching(/points beyond retention policy dropped=1 \(line: metrics,host=a value=1 1700000000000001000\)/),
    });
  });

  it('round-trips hostile measurement, tag and field names and values', async () => {
    const hostile = 'we ird,name=x "q" \'s\' é 🙂 a\\b';
    const { sink, db } = await openSink({ measurement: `m ${hostile} {table}`, tags: ['tag ,=key'], key_as_tags: false, timestamp_column: 'ts' });
    const value = 'line one\nline "two", with = and \\ backslash\\ and é 🙂 and \\';
    const after = { 'tag ,=key': hostile, 'field ,= "key" é': value, ts: 1_700_000_000_000, 'num,ber': 2 };
    assertOk(await sink.write([ev('c', 'weird', { 'tag ,=key': hostile }, after)]));
    const measurement = `m ${hostile} weird`;
    const points = await selectPoints(`SELECT * FROM "${measurement.replace(/["\\]/g, '\\$&')}"`, db);
    expect(points).toEqual([
      { measurement, time: '1700000000000000000', values: { 'tag ,=key': hostile, 'field ,= "key" é': value, 'num,ber': '2' } },
    ]);
  });

  it('refuses, per record, a tag value line protocol cannot carry; the others of the batch are written', async () => {
    const { sink, db } = await openSink({ tags: ['host'], timestamp_column: 'ts' });
    const results = await sink.write([
      ev('c', 'metrics', { id: 1 }, { host: 'two\nlines', ts: 1, value: 1 }),
      ev('c', 'metrics', { id: 2 }, { host: 'ends\\', ts: 2, value: 2 }),
      ev('c', 'metrics', { id: 3 }, { host: 'fine', ts: 3, value: 3 }),
    ]);
    expect(results.map((r) => (r.ok ? 'ok' : `${r.error.code} ${r.error.retriable}`))).toEqual([
      'INFLUX_UNREPRESENTABLE false',
      'INFLUX_UNREPRESENTABLE false',
      'ok',
    ]);
    expect((await selectPoints('SELECT * FROM metrics', db)).map((p) => p.values['host'])).toEqual(['fine']);
  });

  it('writes int64 exactly with the i suffix, decimals as strings (or floats when asked), booleans, JSON text', async () => {
    const columns = [
      column('id', 'int64'),
      column('big', 'int64'),
      column('small', 'int32'),
      column('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' }),
      column('ok', 'boolean'),
      column('doc', 'string', 'io.debezium.data.Json'),
    ];
    const row = { id: 1, big: 9223372036854775807n, small: -5, price: '123456789012345678.90', ok: false, doc: { a: [1, 'x'] } };
    const { sink, db } = await openSink({ measurement: 'types' });
    assertOk(await sink.write([ev('c', 'types', { id: 1 }, row, { columns })]));
    const [p] = await selectPoints('SELECT * FROM types', db);
    expect(p?.values).toEqual({ id: '1', big: '9223372036854775807', small: '-5', price: '123456789012345678.90', ok: 'false', doc: '{"a":[1,"x"]}' });
    const types = parseCsv(await influxQuery('SHOW FIELD KEYS FROM types', db)).map((r) => `${r[2]}:${r[3]}`);
    expect(types.sort()).toEqual(['big:integer', 'doc:string', 'fieldKey:fieldType', 'ok:boolean', 'price:string', 'small:integer'].sort());

    const floats = await openSink({ measurement: 'types', decimals: 'float' });
    assertOk(await floats.sink.write([ev('c', 'types', { id: 1 }, { id: 1, price: '12.25' }, { columns })]));
    const f = parseCsv(await influxQuery('SHOW FIELD KEYS FROM types', floats.db)).find((r) => r[2] === 'price');
    expect(f?.[3]).toBe('float');
  });

  it('precision: a µs time into an ms sink is refused, or truncated when configured; ms times pass', async () => {
    const strict = await openSink({ precision: 'ms', timestamp_column: 'ts', tags: ['host'] });
    const results = await strict.sink.write([
      ev('c', 'metrics', { id: 1 }, { host: 'a', ts: '2023-11-14T22:13:20.123456', value: 1 }),
      ev('c', 'metrics', { id: 2 }, { host: 'b', ts: '2023-11-14T22:13:20.123000', value: 2 }),
    ]);
    expect(results[0]).toMatchObject({ ok: false, error: { code: 'INFLUX_UNREPRESENTABLE', retriable: false } });
    expect(results[0]?.ok === false && results[0].error.message).toMatch(/below the sink's precision ms/);
    expect(results[1]).toEqual({ ok: true });
    expect((await selectPoints('SELECT * FROM metrics', strict.db)).map((p) => p.time)).toEqual(['1700000000123000000']);

    const loose = await openSink({ precision: 'ms', on_precision_loss: 'truncate', timestamp_column: 'ts', tags: ['host'] });
    assertOk(await loose.sink.write([ev('c', 'metrics', { id: 1 }, { host: 'a', ts: '2023-11-14T22:13:20.123456', value: 1 })]));
    expect((await selectPoints('SELECT * FROM metrics', loose.db)).map((p) => p.time)).toEqual(['1700000000123000000']);
  });

  it('an update overwrites the point with the same tags and time; replaying the batch changes nothing', async () => {
    const { sink, db } = await openSink({ timestamp_column: 'ts' });
    const key = { host: 'h1', ts: '2023-11-14T22:13:20.000000' };
    const batch = [
      ev('c', 'metrics', key, { ...key, value: 1, n: 1 }, { columns: metricColumns }),
      ev('u', 'metrics', key, { ...key, value: 2, n: 2 }, { columns: metricColumns }),
      ev('c', 'metrics', { host: 'h2', ts: key.ts }, { host: 'h2', ts: key.ts, value: 5, n: 5 }, { columns: metricColumns }),
    ];
    assertOk(await sink.write(batch));
    assertOk(await sink.write(batch));
    const points = await selectPoints('SELECT * FROM metrics', db);
    expect(points.map((p) => p.values).sort((a, b) => String(a['host']).localeCompare(String(b['host'])))).toEqual([
      { host: 'h1', value: '2', n: '2' },
      { host: 'h2', value: '5', n: '5' },
    ]);
  });

  it('commit time: one point per change, timed by source.ts_ms', async () => {
    const { sink, db } = await openSink({ tags: ['host'] });
    const a = ev('c', 'metrics', { id: 1 }, { id: 1, host: 'h', value: 1 });
    const b = { ...ev('u', 'metrics', { id: 1 }, { id: 1, host: 'h', value: 2 }), source: { ...a.source, tsMs: a.source.tsMs! + 1 } };
    assertOk(await sink.write([a, b]));
    const points = await selectPoints('SELECT value FROM metrics', db);
    expect(points.map((p) => [p.time, p.values['value']])).toEqual([
      ['1700000000000000000', '1'],
      ['1700000000001000000', '2'],
    ]);
  });

  it('on_delete: delete_point removes the deleted row\'s point, ignore keeps it; unchanged-TOAST fields keep their stored value', async () => {
    for (const onDelete of ['delete_point', 'ignore'] as const) {
      const { sink, db } = await openSink({ timestamp_column: 'ts', on_delete: onDelete });
      const k1 = { host: "o'brien \"1\"", ts: '2023-11-14T22:13:20.000000' };
      const k2 = { host: 'two', ts: '2023-11-14T22:13:20.000000' };
      assertOk(await sink.write([
        ev('c', 'metrics', k1, { ...k1, value: 1, n: 1 }, { columns: metricColumns }),
        ev('c', 'metrics', k2, { ...k2, value: 2, n: 2 }, { columns: metricColumns }),
        ev('u', 'metrics', k2, { ...k2, value: UNAVAILABLE, n: 3 }, { columns: metricColumns }),
      ]));
      assertOk(await sink.write([ev('d', 'metrics', k1, null, { before: k1 })]));
      const hosts = (await selectPoints('SELECT * FROM metrics', db)).map((p) => p.values);
      const two = { host: 'two', value: '2', n: '3' };
      expect(hosts).toEqual(onDelete === 'ignore' ? expect.arrayContaining([two, { host: k1.host, value: '1', n: '1' }]) : [two]);
    }
  });

  it('truncate: drop_series removes every point of the table\'s measurement, in order with the changes around it', async () => {
    const { sink, db } = await openSink({ truncate: 'drop_series', timestamp_column: 'ts', tags: ['host'] });
    assertOk(await sink.write([
      ev('c', 'metrics', { id: 1 }, { host: 'a', ts: 1, value: 1 }),
      ev('t', 'metrics', {}, null),
      ev('c', 'metrics', { id: 2 }, { host: 'b', ts: 2, value: 2 }),
    ]));
    expect((await selectPoints('SELECT * FROM metrics', db)).map((p) => p.values['host'])).toEqual(['b']);
  });

  it('a field type conflict fails the write permanently with InfluxDB\'s message and the line', async () => {
    const { sink } = await openSink({ tags: ['host'], timestamp_column: 'ts' });
    assertOk(await sink.write([ev('c', 'metrics', { id: 1 }, { host: 'a', ts: 1, value: 1 })]));
    const bad = sink.write([ev('c', 'metrics', { id: 2 }, { host: 'a', ts: 2, value: 'text' })]);
    await expect(bad).rejects.toBeInstanceOf(SinkError);
    await expect(bad).rejects.toMatchObject({ retriable: false, code: 'INFLUX_FIELD_TYPE_CONFLICT' });
    await expect(bad).rejects.toThrow(/field type conflict: input field "value" on measurement "metrics" is type string, already exists as type float.*\(line: metrics,host=a value="text" 2000000\)/);
  });

  it('an unreachable server fails the write as retriable (connection refused)', async () => {
    const config = influxdbSink.configSchema.parse({ url: 'http://127.0.0.1:1', database: 'nowhere' });
    const sink = influxdbSink.create('down', config, { logger });
    await sink.start();
    await expect(sink.write([ev('c', 'metrics', { id: 1 }, { id: 1, value: 1 })])).rejects.toMatchObject({ retriable: true, code: 'INFLUX_CONNECTION' });
    await sink.close();
  });
});
