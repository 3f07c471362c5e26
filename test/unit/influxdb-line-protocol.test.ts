import { describe, expect, it } from 'vitest';
import { classify } from '../../connectors/influxdb/classify.ts';
import { InfluxHttpError, InfluxTransportError, quoteIdent, quoteLiteral } from '../../connectors/influxdb/client.ts';
import { configSchema, layoutFor } from '../../connectors/influxdb/config.ts';
import { encodeLine, escapeKey, escapeMeasurement, quoteString, toPrecision, UnrepresentableError } from '../../connectors/influxdb/line-protocol.ts';
import { isoToNanos, rowToPoint } from '../../connectors/influxdb/points.ts';
import { column, makeEvent, UNAVAILABLE } from '../support/events.ts';

describe('line protocol escaping', () => {
  it('escapes measurement, tag and field names and string values as InfluxDB 1.x reads them', () => {
    expect(escapeMeasurement('cpu load,total=1')).toBe('cpu\\ load\\,total=1');
    expect(escapeKey('tag key', 'a b,c=d')).toBe('a\\ b\\,c\\=d');
    expect(escapeKey('tag value', 'a\\b "q" é🙂')).toBe('a\\b\\ "q"\\ é🙂');
    expect(quoteString('say "hi"\\ \n next')).toBe('"say \\"hi\\"\\\\ \n next"');
  });

  it('refuses names and tag values that line protocol cannot carry, saying why', () => {
    expect(() => escapeKey('tag value', 'two\nlines')).toThrow(/line break/);
    expect(() => escapeKey('tag value', 'ends with\\')).toThrow(/backslash at its end/);
    expect(() => escapeKey('field key', 'a\\=b')).toThrow(UnrepresentableError);
    expect(() => escapeMeasurement('m\\ x')).toThrow(UnrepresentableError);
    expect(() => escapeKey('tag key', '')).toThrow(/empty/);
  });

  it('encodes a whole point: tags sorted, empty tags left out, int64 exactly with i, floats and booleans', () => {
    const line = encodeLine({
      measurement: 'm',
      tags: [['z', 'last'], ['a', 'first'], ['empty', '']],
      fields: [
        ['big', { type: 'integer', value: 9223372036854775807n }],
        ['neg', { type: 'integer', value: -9223372036854775808n }],
        ['f', { type: 'float', value: 0.1 }],
        ['whole', { type: 'float', value: 3 }],
        ['ok', { type: 'boolean', value: true }],
        ['s', { type: 'string', value: 'x' }],
      ],
      time: 1700000000123456789n,
    });
    expect(line).toBe('m,a=first,z=last big=9223372036854775807i,neg=-9223372036854775808i,f=0.1,whole=3,ok=true,s="x" 1700000000123456789');
  });

  it('refuses integers outside int64, non-finite floats and points without fields', () => {
    const point = (value: bigint | number) => ({
      measurement: 'm',
      tags: [],
      fields: [['v', typeof value === 'bigint' ? { type: 'integer' as const, value } : { type: 'float' as const, value }] as const],
      time: 1n,
    });
    expect(() => encodeLine(point(2n ** 63n))).toThrow(/int64 range/);
    expect(() => encodeLine(point(Number.NaN))).toThrow(/finite/);
    expect(() => encodeLine({ measurement: 'm', tags: [], fields: [], time: 1n })).toThrow(/no field/);
  });
});

describe('timestamps and precision', () => {
  it('reads ISO texts with up to 9 fraction digits, zones and years before 100', () => {
    expect(isoToNanos('2023-11-14T22:13:20.123456Z')).toBe(1700000000123456000n);
    expect(isoToNanos('2023-11-14T22:13:20.123456789')).toBe(1700000000123456789n);
    expect(isoToNanos('2023-11-15T00:13:20.5+02:00')).toBe(1700000000500000000n);
    expect(isoToNanos('1969-12-31T23:59:59.999999Z')).toBe(-1000n);
    expect(isoToNanos('0050-01-01')).toBe(BigInt(Date.parse('0050-01-01T00:00:00Z')) * 1_000_000n);
    expect(() => isoToNanos('yesterday')).toThrow(/ISO-8601/);
  });

  it('refuses a time finer than the precision unless truncation is asked for (toward the past)', () => {
    expect(toPrecision(1700000000123000000n, 'ms', false)).toBe(1700000000123n);
    expect(() => toPrecision(1700000000123456000n, 'ms', false)).toThrow(/below the sink's precision ms/);
    expect(toPrecision(1700000000123456000n, 'ms', true)).toBe(1700000000123n);
    expect(toPrecision(-1000n, 'ms', true)).toBe(-1n);
    expect(toPrecision(1700000000123456000n, 'us', false)).toBe(1700000000123456n);
  });
});

describe('rows to points', () => {
  const config = configSchema.parse({ database: 'd', timestamp_column: 'ts' });
  const columns = [
    column('id', 'int32'),
    column('host', 'string'),
    column('state', 'string', 'io.debezium.data.Enum'),
    column('ts', 'int64', 'io.debezium.time.MicroTimestamp'),
    column('load', 'double'),
    column('count', 'int64'),
    column('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' }),
    column('note', 'string', 'io.debezium.data.Json'),
    column('up', 'boolean'),
  ];
  const row = { id: 7, host: 'db 1', state: 'ok', ts: '2023-11-14T22:13:20.123456', load: 1, count: 9007199254740993n, price: '12.30', note: { a: 1 }, up: true, gone: null, toast: UNAVAILABLE };
  const event = makeEvent({ op: 'c', schema: 'public', table: 'metrics', key: { id: 7 }, after: row, lsn: 10, columns });

  it('by type: key columns and strings/enums are tags; numbers, booleans, decimals and JSON are fields; nulls and TOAST left out', () => {
    const p = rowToPoint(event, row, layoutFor(config, 'public.metrics'));
    expect(p.measurement).toBe('metrics');
    expect(p.tags).toEqual([['id', '7'], ['host', 'db 1'], ['state', 'ok']]);
    expect(p.fields).toEqual([
      ['load', { type: 'float', value: 1 }],
      ['count', { type: 'integer', value: 9007199254740993n }],
      ['price', { type: 'string', value: '12.30' }],
      ['note', { type: 'string', value: '{"a":1}' }],
      ['up', { type: 'boolean', value: true }],
    ]);
    expect(p.nanos).toBe(1700000000123456000n);
  });

  it('by list, per table, with decimals as floats and the commit time', () => {
    const c = configSchema.parse({
      database: 'd',
      tables: { 'public.metrics': { measurement: '{schema}_{table}', tags: ['host'], fields: ['price', 'up'], decimals: 'float' } },
    });
    const p = rowToPoint(event, row, layoutFor(c, 'public.metrics'));
    expect(p.measurement).toBe('public_metrics');
    expect(p.tags).toEqual([['host', 'db 1']]);
    expect(p.fields).toEqual([['price', { type: 'float', value: 12.3 }], ['up', { type: 'boolean', value: true }]]);
    expect(p.nanos).toBe(1_700_000_000_000n * 1_000_000n);
  });

  it('refuses a point whose time column is empty or whose tag is an unchanged TOAST value', () => {
    const l = layoutFor(config, 'public.metrics');
    expect(() => rowToPoint(event, { ...row, ts: null }, l)).toThrow(/timestamp column "ts" has no value/);
    expect(() => rowToPoint(event, { ...row, host: UNAVAILABLE }, l)).toThrow(/unavailable/);
  });

  it('config: unknown placeholders and delete_point without a time column are refused', () => {
    expect(configSchema.safeParse({ database: 'd', measurement: '{nope}' }).success).toBe(false);
    const r = configSchema.safeParse({ database: 'd', on_delete: 'delete_point' });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toMatch(/timestamp_column/);
  });
});

describe('InfluxQL quoting and error classification', () => {
  it('quotes identifiers and literals', () => {
    expect(quoteIdent('we"ird\\')).toBe('"we\\"ird\\\\"');
    expect(quoteLiteral("it's\\")).toBe("'it\\'s\\\\'");
  });

  it('partial writes and type conflicts are permanent; 5xx, 404, timeouts and refused connections retriable', () => {
    const conflict = new InfluxHttpError(400, 'partial write: field type conflict: input field "v" on measurement "m" is type string, already exists as type float dropped=1', 'POST /write');
    expect(classify(conflict)).toMatchObject({ retriable: false, code: 'INFLUX_FIELD_TYPE_CONFLICT' });
    expect(classify(new InfluxHttpError(400, 'partial write: points beyond retention policy dropped=1', 'w'))).toMatchObject({ retriable: false, code: 'INFLUX_PARTIAL_WRITE' });
    expect(classify(new InfluxHttpError(400, 'unable to parse \'x\': missing fields', 'w'))).toMatchObject({ retriable: false, code: 'INFLUX_PARSE' });
    expect(classify(new InfluxHttpError(401, 'authorization failed', 'w')).retriable).toBe(false);
    expect(classify(new InfluxHttpError(503, 'busy', 'w')).retriable).toBe(true);
    expect(classify(new InfluxHttpError(500, 'timeout', 'w')).retriable).toBe(true);
    expect(classify(new InfluxHttpError(404, 'database not found: "x"', 'w'))).toMatchObject({ retriable: true, code: 'INFLUX_DATABASE_NOT_FOUND' });
    expect(classify(new InfluxTransportError('refused', false, { cause: null }))).toMatchObject({ retriable: true, code: 'INFLUX_CONNECTION' });
    expect(classify(new InfluxTransportError('slow', true, { cause: null }))).toMatchObject({ retriable: true, code: 'INFLUX_TIMEOUT' });
    expect(classify(new TypeError('bug')).retriable).toBe(false);
  });
});
