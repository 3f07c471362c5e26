import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createDecoder, DECODE_ERROR_CODES, type Decoder, type DecodeErrorCode } from '../../src/decode/debezium.ts';
import { ConfigError, DecodeError } from '../../src/errors.ts';
import {
  DEBEZIUM_UNAVAILABLE_PLACEHOLDER,
  UNAVAILABLE,
  type ChangeEvent,
  type DecodedRecord,
  type RawRecord,
} from '../../src/model/change-event.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/debezium/', import.meta.url));
const PLACEHOLDER_BASE64 = Buffer.from(DEBEZIUM_UNAVAILABLE_PLACEHOLDER).toString('base64');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function text(path: string): string {
  return readFileSync(FIXTURES + path, 'utf8');
}

/** Drops whitespace outside strings without parsing, so integers beyond 2^53 keep every digit. */
function minify(json: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += json[++i]!;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c !== ' ' && c !== '\n' && c !== '\r' && c !== '\t') {
      out += c;
    }
  }
  return out;
}

function parse(path: string): JsonObject {
  return JSON.parse(text(path)) as JsonObject;
}

/** The payload alone: what JsonConverter writes with schemas.enable=false. */
function payloadOnly(json: string): string {
  return JSON.stringify((JSON.parse(json) as JsonObject)['payload']);
}

function obj(v: Json | undefined): JsonObject {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
  return v;
}

function arr(v: Json | undefined): Json[] {
  if (!Array.isArray(v)) throw new Error('not an array');
  return v;
}

function record(
  topic: string,
  value: string | Buffer | null,
  key: string | Buffer | null,
  extra: Partial<RawRecord> = {},
): RawRecord {
  const bytes = (v: string | Buffer | null): Buffer | null => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v);
  return { topic, partition: 3, offset: '1042', timestamp: 1730000000999, key: bytes(key), value: bytes(value), headers: {}, ...extra };
}

function asChange(d: DecodedRecord): ChangeEvent {
  if (d.kind !== 'change') throw new Error(`expected a change, got ${d.kind}`);
  return d;
}

function decodeError(decoder: Decoder, rec: RawRecord): DecodeError {
  try {
    decoder.decode(rec);
  } catch (e) {
    if (e instanceof DecodeError) return e;
    throw e;
  }
  throw new Error('expected a DecodeError');
}

function expectDecodeError(rec: RawRecord, code: DecodeErrorCode, message: RegExp | string, decoder = createDecoder()): DecodeError {
  const err = decodeError(decoder, rec);
  expect(err.code).toBe(code);
  expect(DECODE_ERROR_CODES).toContain(err.code);
  expect(err.retriable).toBe(false);
  expect(err.stage).toBe('decode');
  expect(err.at).toEqual({ topic: rec.topic, partition: rec.partition, offset: rec.offset });
  expect(err.message.startsWith(`${rec.topic}/${rec.partition}@${rec.offset}: `)).toBe(true);
  if (typeof message === 'string') expect(err.message).toContain(message);
  else expect(err.message).toMatch(message);
  return err;
}

// --- PostgreSQL: every op, three encodings ------------------------------------------------------

const CUSTOMERS = 'dbserver1.inventory.customers';
const ANNE = { id: 1005, first_name: 'Anne', last_name: 'Kretchmar', email: 'annek@noanswer.org' };
const CUSTOMERS_TABLE = { id: 'inventory.customers', db: 'postgres', schema: 'inventory', table: 'customers' };

const PG_OPS = [
  {
    file: 'customers-insert',
    op: 'c',
    before: null,
    after: ANNE,
    parts: [24023128n],
    tsMs: 1730000000456,
    sourceTsMs: 1730000000123,
    snapshot: undefined,
  },
  {
    file: 'customers-update',
    op: 'u',
    before: ANNE,
    after: { ...ANNE, email: 'anne.k@example.com' },
    parts: [24023560n],
    tsMs: 1730000100010,
    sourceTsMs: 1730000100000,
    snapshot: undefined,
  },
  {
    file: 'customers-delete',
    op: 'd',
    before: { id: 1005, first_name: '', last_name: '', email: '' },
    after: null,
    parts: [24023800n],
    tsMs: 1730000200020,
    sourceTsMs: 1730000200000,
    snapshot: undefined,
  },
  {
    file: 'customers-snapshot',
    op: 'r',
    before: null,
    after: ANNE,
    // Snapshot records have no commit LSN in `sequence`: [lsn, lsn].
    parts: [34490984n],
    tsMs: 1729999000100,
    sourceTsMs: 1729999000000,
    snapshot: 'first',
  },
  {
    file: 'customers-truncate',
    op: 't',
    before: null,
    after: null,
    parts: [24024000n],
    tsMs: 1730000300005,
    sourceTsMs: 1730000300000,
    snapshot: undefined,
  },
] as const;

const ENCODINGS: readonly [string, (json: string) => string, boolean][] = [
  ['with schema, compact as JsonConverter writes it', minify, true],
  ['with schema, pretty-printed', (json) => json, true],
  ['without schema (schemas.enable=false)', payloadOnly, false],
];

describe.each(ENCODINGS)('PostgreSQL change events %s', (_name, encode, withSchema) => {
  it.each(PG_OPS)('op $op ($file)', (c) => {
    const decoder = createDecoder();
    const key = c.op === 't' ? null : encode(text('postgres/customers-key-1005.json'));
    const rec = record(CUSTOMERS, encode(text(`postgres/${c.file}.json`)), key);
    // Twice: the second decode takes the cached-schema path.
    for (let i = 0; i < 2; i++) {
      const ev = asChange(decoder.decode(rec));
      expect(ev.op).toBe(c.op);
      expect(ev.table).toEqual(CUSTOMERS_TABLE);
      expect(ev.key).toEqual(c.op === 't' ? null : { id: 1005 });
      expect(ev.before).toEqual(c.before);
      expect(ev.after).toEqual(c.after);
      expect(ev.position).toEqual({ kind: 'postgres', parts: c.parts });
      expect(ev.tsMs).toBe(c.tsMs);
      expect(ev.kafka).toEqual({ topic: CUSTOMERS, partition: 3, offset: '1042', timestamp: 1730000000999 });
      expect(ev.source).toMatchObject({
        connector: 'postgresql',
        name: 'dbserver1',
        db: 'postgres',
        schema: 'inventory',
        table: 'customers',
        tsMs: c.sourceTsMs,
        snapshot: c.snapshot,
      });
      expect(ev.source.raw['txId']).toBeTypeOf('number');
      if (withSchema) {
        expect(ev.columns?.map((col) => [col.name, col.type, col.optional])).toEqual([
          ['id', 'int32', false],
          ['first_name', 'string', false],
          ['last_name', 'string', false],
          ['email', 'string', false],
        ]);
      } else {
        expect(ev.columns).toBeUndefined();
      }
    }
  });
});

describe('PostgreSQL specifics', () => {
  it('reads the raw fixture files as they are (no re-encoding)', () => {
    const ev = asChange(
      createDecoder().decode(
        record(CUSTOMERS, readFileSync(`${FIXTURES}postgres/customers-insert-noschema.json`), text('postgres/customers-key-1005-noschema.json')),
      ),
    );
    expect(ev.after).toEqual(ANNE);
    expect(ev.position.parts).toEqual([24023128n]);
  });

  it('reads Debezium 1.x snapshot records: boolean snapshot flag, no sequence -> [lsn, lsn]', () => {
    const ev = asChange(
      createDecoder().decode(record(CUSTOMERS, text('postgres/customers-snapshot-1x-noschema.json'), '{"id":1005}')),
    );
    expect(ev.op).toBe('r');
    expect(ev.source.snapshot).toBe('true');
    expect(ev.position).toEqual({ kind: 'postgres', parts: [3456789n] });
  });

  it('a delete needs only the key when before is null (REPLICA IDENTITY NOTHING)', () => {
    const p = obj(parse('postgres/customers-delete.json')['payload']);
    p['before'] = null;
    const ev = asChange(createDecoder().decode(record(CUSTOMERS, JSON.stringify(p), '{"id":1005}')));
    expect(ev.op).toBe('d');
    expect(ev.before).toBeNull();
    expect(ev.key).toEqual({ id: 1005 });
  });

  it('maps snapshot "false" to undefined and keeps other markers', () => {
    const decoder = createDecoder();
    for (const [flag, expected] of [
      ['false', undefined],
      [false, undefined],
      ['last', 'last'],
      ['incremental', 'incremental'],
      [true, 'true'],
    ] as const) {
      const p = obj(parse('postgres/customers-insert-noschema.json'));
      obj(p['source'])['snapshot'] = flag;
      expect(asChange(decoder.decode(record(CUSTOMERS, JSON.stringify(p), '{"id":1005}'))).source.snapshot).toBe(expected);
    }
  });
});

// --- positions ------------------------------------------------------------------------------------

describe('positions', () => {
  function withSource(path: string, change: (source: JsonObject) => void): string {
    const p = parse(path);
    change(obj(p['source']));
    return JSON.stringify(p);
  }

  it('postgres: [lsn], whatever sequence says', () => {
    const ev = asChange(createDecoder().decode(record(CUSTOMERS, text('postgres/customers-insert-noschema.json'), '{"id":1005}')));
    expect(ev.position).toEqual({ kind: 'postgres', parts: [24023128n] });
  });

  it('postgres: [lsn] when sequence is absent or has no commit LSN', () => {
    const decoder = createDecoder();
    for (const seq of [undefined, null, '[null,"24023128"]', '[null,null]']) {
      const value = withSource('postgres/customers-insert-noschema.json', (s) => {
        if (seq === undefined) delete s['sequence'];
        else s['sequence'] = seq;
      });
      expect(asChange(decoder.decode(record(CUSTOMERS, value, '{"id":1005}'))).position).toEqual({
        kind: 'postgres',
        parts: [24023128n],
      });
    }
  });

  it('postgres: the lsn of sequence when source.lsn is missing', () => {
    const value = withSource('postgres/customers-insert-noschema.json', (s) => {
      delete s['lsn'];
    });
    expect(asChange(createDecoder().decode(record(CUSTOMERS, value, '{"id":1005}'))).position.parts).toEqual([24023128n]);
  });

  it('postgres: Kafka offset when there is no LSN at all', () => {
    const value = withSource('postgres/customers-insert-noschema.json', (s) => {
      delete s['lsn'];
      delete s['sequence'];
    });
    expect(asChange(createDecoder().decode(record(CUSTOMERS, value, '{"id":1005}'))).position).toEqual({
      kind: 'kafka-offset',
      parts: [1042n],
    });
  });

  it('postgres: a malformed sequence is BAD_SOURCE', () => {
    const value = withSource('postgres/customers-insert-noschema.json', (s) => {
      s['sequence'] = '24023119,24023128';
    });
    expectDecodeError(record(CUSTOMERS, value, '{"id":1005}'), 'BAD_SOURCE', 'source.sequence "24023119,24023128"');
  });

  it('mysql: [binlog file number, pos, row]', () => {
    const decoder = createDecoder();
    const key = text('mysql/products-key-101.json');
    const topic = 'dbserver1.inventory.products';
    expect(asChange(decoder.decode(record(topic, text('mysql/products-insert.json'), key))).position).toEqual({
      kind: 'mysql',
      parts: [3n, 154n, 0n],
    });
    expect(asChange(decoder.decode(record(topic, text('mysql/products-update.json'), key))).position.parts).toEqual([
      3n,
      2841n,
      1n,
    ]);
    expect(asChange(decoder.decode(record(topic, text('mysql/products-delete.json'), key))).position.parts).toEqual([
      4n,
      480n,
      0n,
    ]);
  });

  it('source numbers beyond 64 bits are BAD_SOURCE', () => {
    const value = withSource('mysql/products-insert-noschema.json', (s) => {
      s['file'] = 'mysql-bin.99999999999999999999999';
    });
    expectDecodeError(record('p.inventory.products', value, '{"id":101}'), 'BAD_SOURCE', 'does not fit 64 bits');
  });

  it('mysql: row defaults to 0; Kafka offset without file or pos', () => {
    const decoder = createDecoder();
    const noRow = withSource('mysql/products-insert-noschema.json', (s) => {
      delete s['row'];
    });
    expect(asChange(decoder.decode(record('p.inventory.products', noRow, '{"id":101}'))).position.parts).toEqual([3n, 154n, 0n]);
    for (const drop of ['file', 'pos']) {
      const value = withSource('mysql/products-insert-noschema.json', (s) => {
        delete s[drop];
      });
      expect(asChange(decoder.decode(record('p.inventory.products', value, '{"id":101}'))).position).toEqual({
        kind: 'kafka-offset',
        parts: [1042n],
      });
    }
  });

  it('other connectors: Kafka offset', () => {
    const ev = asChange(
      createDecoder().decode(
        record('sqlsrv.shop.dbo.orders', text('misc/sqlserver-nested.json'), text('misc/sqlserver-nested-key.json'), {
          offset: '77',
        }),
      ),
    );
    expect(ev.position).toEqual({ kind: 'kafka-offset', parts: [77n] });
  });

  it('a non-numeric Kafka offset is BAD_OFFSET when the position needs it', () => {
    const rec = record('sqlsrv.shop.dbo.orders', text('misc/sqlserver-nested.json'), text('misc/sqlserver-nested-key.json'), {
      offset: 'x1',
    });
    expectDecodeError(rec, 'BAD_OFFSET', 'Kafka offset "x1"');
  });
});

// --- semantic types ----------------------------------------------------------------------------------

const ALL_TYPES = 'dbserver1.public.all_types';
const ALL_TYPES_AFTER = {
  id: 1,
  price: '-12.340',
  big: '12345678901234567890.1234567890',
  small: '0.05',
  zero: '0.000',
  amount: '-123.4567',
  amount_int: '987654321',
  birth: '1969-12-31',
  leap_day: '2024-02-29',
  first_ad: '0001-01-01',
  year_zero: '0000-01-01',
  bc: '-000001-12-31',
  far_future: '+010000-01-01',
  t: '12:34:56.789012',
  t_zero: '00:00:00.000000',
  t_end: '24:00:00.000000',
  t_ms: '12:34:56.789',
  ts: '2024-06-15T12:34:56.123456',
  ts_before_epoch: '1969-12-31T23:59:59.999999',
  ts_first_ad: '0001-01-01T00:00:00.000000',
  ts_ms: '2024-06-15T12:34:56.123',
  ts_ms_neg: '1969-12-31T00:00:00.001',
  tstz: '2024-06-15T10:34:56.123456Z',
  ttz: '10:34:56.789Z',
  doc: { a: [1, 2, { b: null }], s: 'x' },
  doc_null: null,
  uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  mood: 'happy',
  dur: 3600000000,
  iv: 'P1Y2M3DT4H5M6.78S',
  raw: '3q2+7w==',
  bits: 'pQ==',
  ratio: 0.25,
  flag: true,
  tags: ['a', 'b'],
  prices: ['2.25', '-0.01', null],
  dates: ['1970-01-01', '2024-02-29'],
  location: { x: 1.5, y: -2.25, wkb: 'AQEAAAAAAAAAAAD4PwAAAAAAAALA', srid: null },
};

describe('semantic types (PostgreSQL all_types fixture)', () => {
  it.each([
    ['compact', minify],
    ['pretty', (json: string) => json],
  ])('converts every column (%s)', (_name, encode) => {
    const decoder = createDecoder();
    const rec = record(ALL_TYPES, encode(text('postgres/all-types.json')), encode(text('postgres/all-types-key.json')));
    for (let i = 0; i < 2; i++) {
      const ev = asChange(decoder.decode(rec));
      expect(ev.after).toEqual(ALL_TYPES_AFTER);
      expect(ev.key).toEqual({ id: 1 });
      expect(ev.table).toEqual({ id: 'public.all_types', db: 'postgres', schema: 'public', table: 'all_types' });
    }
  });

  it('describes columns from the schema (bytes stay base64, type says so)', () => {
    const ev = asChange(createDecoder().decode(record(ALL_TYPES, text('postgres/all-types.json'), '{"id":1}')));
    const col = (name: string) => ev.columns?.find((c) => c.name === name);
    expect(ev.columns).toHaveLength(Object.keys(ALL_TYPES_AFTER).length);
    expect(col('price')).toEqual({
      name: 'price',
      type: 'bytes',
      semantic: 'org.apache.kafka.connect.data.Decimal',
      optional: true,
      parameters: { scale: '3', 'connect.decimal.precision': '10' },
      items: undefined,
    });
    expect(col('raw')).toMatchObject({ type: 'bytes', semantic: undefined });
    expect(col('ts')).toMatchObject({ type: 'int64', semantic: 'io.debezium.time.MicroTimestamp' });
    expect(col('prices')?.items).toMatchObject({ name: '', type: 'bytes', semantic: 'org.apache.kafka.connect.data.Decimal' });
    expect(col('id')).toMatchObject({ type: 'int32', optional: false });
  });

  it('without a schema, values pass through untouched', () => {
    const value = payloadOnly(text('postgres/all-types.json'));
    const ev = asChange(createDecoder().decode(record(ALL_TYPES, value, '{"id":1}')));
    const after = obj(obj(JSON.parse(value) as Json)['after']);
    expect(ev.after).toEqual(after);
    expect(ev.after?.['price']).toBe(after['price']);
  });

  it('MySQL types: Decimal, Timestamp(ms), MicroTimestamp, Date, MicroTime incl. negative durations, Json, Enum, EnumSet, Year', () => {
    const ev = asChange(
      createDecoder().decode(record('dbserver1.inventory.products', text('mysql/products-insert.json'), text('mysql/products-key-101.json'))),
    );
    expect(ev.table).toEqual({ id: 'inventory.products', db: 'inventory', schema: undefined, table: 'products' });
    expect(ev.source.connector).toBe('mysql');
    expect(ev.after).toEqual({
      id: 101,
      name: 'scooter',
      price: '3.49',
      weight: 3.14,
      created: '2024-06-15T12:34:56.123',
      updated: '2024-06-15T12:34:56.123456',
      release_date: '2024-02-29',
      open_time: '09:00:00.000000',
      neg_time: '-838:59:59.000000',
      last_seen: '2024-06-15T12:34:56Z',
      color: 'red',
      flags: 'a,c',
      attrs: { size: 'L', tags: ['x'] },
      year: 2024,
    });
  });

  it('MySQL update and delete convert before as well as after', () => {
    const decoder = createDecoder();
    const topic = 'dbserver1.inventory.products';
    const key = text('mysql/products-key-101.json');
    const u = asChange(decoder.decode(record(topic, text('mysql/products-update.json'), key)));
    expect(u.before?.['price']).toBe('3.49');
    expect(u.after?.['price']).toBe('-0.05');
    expect(u.after?.['name']).toBe('scooter v2');
    const d = asChange(decoder.decode(record(topic, text('mysql/products-delete.json'), key)));
    expect(d.after).toBeNull();
    expect(d.before?.['created']).toBe('2024-06-15T12:34:56.123');
    const r = asChange(decoder.decode(record(topic, text('mysql/products-snapshot.json'), key)));
    expect(r.op).toBe('r');
    expect(r.source.snapshot).toBe('true');
  });

  it('MySQL without schema keeps Debezium values (base64 decimal, epoch numbers)', () => {
    const ev = asChange(
      createDecoder().decode(
        record('dbserver1.inventory.products', text('mysql/products-insert-noschema.json'), text('mysql/products-key-101-noschema.json')),
      ),
    );
    expect(ev.after).toMatchObject({ price: 'AV0=', created: 1718454896123, release_date: 19782 });
    expect(ev.columns).toBeUndefined();
  });

  it('Kafka Connect logical types (time.precision.mode=connect), negative values', () => {
    const ev = asChange(
      createDecoder().decode(record('dbserver2.shop.events', text('mysql/events-connect-types.json'), text('mysql/events-connect-key.json'))),
    );
    expect(ev.after).toEqual({ id: 7, day: '1969-01-01', at_time: '01:02:03.004', at: '1969-12-31T23:59:59.000' });
    expect(ev.position).toEqual({ kind: 'mysql', parts: [12n, 99887n, 2n] });
    expect(ev.table.id).toBe('shop.events');
  });

  it('NanoTimestamp beyond 2^53 keeps every digit, on the cached path and the full path', () => {
    const topic = 'server1.INVENTORY.SENSOR_READINGS';
    const value = text('misc/oracle-nanos.json').trim();
    const expected = {
      ID: 9,
      READ_AT: '2024-06-15T12:34:56.123456789',
      READ_AT_OLD: '1969-12-31T23:59:59.999999999',
      AT_TIME: '12:34:56.123456789',
      AT_DAY_MS: '00:00:00.000',
    };
    // Compact (cached after the first record) and with a leading space (never cached).
    for (const v of [value, ` ${value}`]) {
      const decoder = createDecoder();
      for (let i = 0; i < 3; i++) {
        const ev = asChange(decoder.decode(record(topic, v, text('misc/oracle-nanos-key.json'))));
        expect(ev.after).toEqual(expected);
        expect(ev.table).toEqual({ id: 'INVENTORY.SENSOR_READINGS', db: 'ORCLPDB1', schema: 'INVENTORY', table: 'SENSOR_READINGS' });
        // The source block keeps its own numbers: only the wide columns' integers were quoted.
        expect(ev.source.raw['ts_ms']).toBe(1718454896000);
      }
    }
  });

  it('converts inside structs, arrays and maps (object and [key, value] forms); placeholders only at top level', () => {
    const ev = asChange(
      createDecoder().decode(record('sqlsrv.shop.dbo.orders', text('misc/sqlserver-nested.json'), text('misc/sqlserver-nested-key.json'))),
    );
    expect(ev.table).toEqual({ id: 'dbo.orders', db: 'shop', schema: 'dbo', table: 'orders' });
    expect(ev.after).toEqual({
      id: 3,
      address: { street: DEBEZIUM_UNAVAILABLE_PLACEHOLDER, fee: '-1.50', days: ['1970-01-02', null, '1969-12-31'] },
      totals: { net: '100.5', tax: null },
      due_by_rank: [
        [1, '2024-02-29'],
        [2, null],
      ],
    });
  });

  it('Decimal as a JSON number (JsonConverter decimal.format=NUMERIC) prints with the scale; decimal text is kept', () => {
    const p = parse('postgres/all-types.json');
    const after = obj(obj(p['payload'])['after']);
    after['price'] = -12.34;
    after['small'] = 0.05;
    after['zero'] = '-7.125';
    const ev = asChange(createDecoder().decode(record(ALL_TYPES, JSON.stringify(p), '{"id":1}')));
    expect(ev.after?.['price']).toBe('-12.340');
    expect(ev.after?.['small']).toBe('0.05');
    // Decimal text that is not base64 is kept as it is.
    expect(ev.after?.['zero']).toBe('-7.125');
  });

  it('a schema change on a topic takes effect at once, and the old schema is still recognised', () => {
    const decoder = createDecoder();
    const v1 = minify(text('postgres/all-types.json'));
    const p = JSON.parse(v1) as JsonObject;
    // ALTER COLUMN birth TYPE int: same envelope name, version and field count.
    for (const row of arr(obj(p['schema'])['fields']).slice(0, 2)) {
      const birth = arr(obj(row)['fields']).map(obj).find((f) => f['field'] === 'birth')!;
      birth['type'] = 'int32';
      delete birth['name'];
      delete birth['version'];
    }
    const v2 = JSON.stringify(p);
    expect(asChange(decoder.decode(record(ALL_TYPES, v1, '{"id":1}'))).after?.['birth']).toBe('1969-12-31');
    expect(asChange(decoder.decode(record(ALL_TYPES, v2, '{"id":1}'))).after?.['birth']).toBe(-1);
    expect(asChange(decoder.decode(record(ALL_TYPES, v1, '{"id":1}'))).after?.['birth']).toBe('1969-12-31');
    expect(asChange(decoder.decode(record(ALL_TYPES, v2, '{"id":1}'))).after?.['birth']).toBe(-1);
  });

  it('converts key columns when the key has a schema', () => {
    const keySchema = {
      type: 'struct',
      optional: false,
      name: 'dbserver1.public.all_types.Key',
      fields: [
        { type: 'int32', optional: false, name: 'io.debezium.time.Date', version: 1, field: 'day' },
        { type: 'string', optional: false, field: 'code' },
      ],
    };
    const key = JSON.stringify({ schema: keySchema, payload: { day: 19782, code: DEBEZIUM_UNAVAILABLE_PLACEHOLDER } });
    const ev = asChange(createDecoder().decode(record(ALL_TYPES, text('postgres/all-types.json'), key)));
    // Key columns are never TOASTed: a key value equal to the placeholder text stays text.
    expect(ev.key).toEqual({ day: '2024-02-29', code: DEBEZIUM_UNAVAILABLE_PLACEHOLDER });
  });
});

// --- TOAST placeholder ---------------------------------------------------------------------------

describe('unchanged TOAST placeholder', () => {
  const DOCS = 'dbserver1.inventory.documents';
  const UNAVAILABLE_COLUMNS = ['body', 'tags', 'scores', 'attachment', 'meta', 'attrs', 'related'];

  it.each([
    ['with schema', 'postgres/documents-update-toast.json', '2024-06-15T12:34:56.123456'],
    ['without schema', 'postgres/documents-update-toast-noschema.json', 1718454896123456],
  ])('becomes UNAVAILABLE for string, bytes, arrays, json, hstore and uuid[] (%s)', (_name, file, updatedAt) => {
    const ev = asChange(createDecoder().decode(record(DOCS, text(file), text('postgres/documents-key-42.json'))));
    expect(ev.op).toBe('u');
    expect(ev.before).toBeNull();
    for (const c of UNAVAILABLE_COLUMNS) expect(ev.after?.[c], c).toBe(UNAVAILABLE);
    expect(ev.after?.['title']).toBe('Quarterly report');
    expect(ev.after?.['id']).toBe(42);
    expect(ev.after?.['updated_at']).toBe(updatedAt);
  });

  it('with a schema, the base64 form counts only for bytes columns', () => {
    const p = parse('postgres/documents-update-toast.json');
    obj(obj(p['payload'])['after'])['title'] = PLACEHOLDER_BASE64;
    const ev = asChange(createDecoder().decode(record(DOCS, JSON.stringify(p), '{"id":42}')));
    expect(ev.after?.['title']).toBe(PLACEHOLDER_BASE64);
    expect(ev.after?.['attachment']).toBe(UNAVAILABLE);
  });

  it('only an exact match counts', () => {
    const p = obj(parse('postgres/documents-update-toast-noschema.json'));
    const after = obj(p['after']);
    after['body'] = `${DEBEZIUM_UNAVAILABLE_PLACEHOLDER} `;
    after['tags'] = [DEBEZIUM_UNAVAILABLE_PLACEHOLDER, 'x'];
    const ev = asChange(createDecoder().decode(record(DOCS, JSON.stringify(p), '{"id":42}')));
    expect(ev.after?.['body']).toBe(`${DEBEZIUM_UNAVAILABLE_PLACEHOLDER} `);
    expect(ev.after?.['tags']).toEqual([DEBEZIUM_UNAVAILABLE_PLACEHOLDER, 'x']);
  });
});

// --- tombstones, heartbeats, transactions --------------------------------------------------------

describe('tombstones', () => {
  it.each([
    ['null value', null],
    ['empty value', Buffer.alloc(0)],
    ['JSON null', 'null'],
    ['null payload with a null schema', '{"schema":null,"payload":null}'],
  ])('%s -> tombstone with the decoded key and the table from the topic', (_name, value) => {
    const d = createDecoder().decode(record(CUSTOMERS, value, text('postgres/customers-key-1005.json')));
    expect(d).toEqual({
      kind: 'tombstone',
      table: { id: 'inventory.customers', db: undefined, schema: undefined, table: 'customers' },
      key: { id: 1005 },
      kafka: { topic: CUSTOMERS, partition: 3, offset: '1042', timestamp: 1730000000999 },
    });
  });

  it('takes db/schema from a change seen on the same topic', () => {
    const decoder = createDecoder();
    decoder.decode(record(CUSTOMERS, text('postgres/customers-delete.json'), '{"id":1005}'));
    const d = decoder.decode(record(CUSTOMERS, null, '{"id":1005}'));
    expect(d.kind === 'tombstone' && d.table).toEqual(CUSTOMERS_TABLE);
  });

  it('has no table when the topic has fewer than three segments, and a null key when there is none', () => {
    const decoder = createDecoder();
    expect(decoder.decode(record('customers', null, null))).toMatchObject({ kind: 'tombstone', table: undefined, key: null });
    expect(decoder.decode(record('inventory.customers', null, '{"id":1}'))).toMatchObject({ table: undefined, key: { id: 1 } });
    expect(decoder.decode(record('a..b', null, null))).toMatchObject({ table: undefined });
  });
});

describe('heartbeats', () => {
  it('a record of the heartbeat topic is a Heartbeat (schema or not)', () => {
    const decoder = createDecoder();
    const topic = '__debezium-heartbeat.dbserver1';
    for (const value of [text('misc/heartbeat.json'), payloadOnly(text('misc/heartbeat.json'))]) {
      expect(decoder.decode(record(topic, value, text('misc/heartbeat-key.json')))).toEqual({
        kind: 'heartbeat',
        tsMs: 1730001000000,
        kafka: { topic, partition: 3, offset: '1042', timestamp: 1730000000999 },
      });
    }
    expect(decoder.decode(record(topic, null, null))).toMatchObject({ kind: 'heartbeat', tsMs: undefined });
  });

  it('honours a custom prefix; other topics are not heartbeats', () => {
    const decoder = createDecoder({ heartbeatTopicPrefix: 'hb-' });
    expect(decoder.decode(record('hb-dbserver1', '{"ts_ms":5}', null))).toMatchObject({ kind: 'heartbeat', tsMs: 5 });
    expectDecodeError(record('__debezium-heartbeat.x', '{"ts_ms":5}', null), 'MISSING_OP', 'no "op"', decoder);
  });

  it('a heartbeat value that is not an object is NOT_AN_ENVELOPE', () => {
    expectDecodeError(record('__debezium-heartbeat.x', '[1]', null), 'NOT_AN_ENVELOPE', 'heartbeat value is an array');
  });
});

describe('transaction metadata', () => {
  const TOPIC = 'dbserver1.transaction';

  it('BEGIN and END records are transaction markers', () => {
    const decoder = createDecoder();
    const key = text('misc/transaction-key.json');
    expect(decoder.decode(record(TOPIC, text('misc/transaction-begin.json'), key))).toEqual({
      kind: 'transaction',
      status: 'BEGIN',
      id: '571:53195829',
      eventCount: undefined,
      tsMs: 1730001100000,
      kafka: { topic: TOPIC, partition: 3, offset: '1042', timestamp: 1730000000999 },
    });
    expect(decoder.decode(record(TOPIC, payloadOnly(text('misc/transaction-end.json')), key))).toMatchObject({
      kind: 'transaction',
      status: 'END',
      eventCount: 2,
      tsMs: 1730001100100,
    });
  });

  it('honours a custom suffix', () => {
    const decoder = createDecoder({ transactionTopicSuffix: '.tx' });
    expect(decoder.decode(record('dbserver1.tx', text('misc/transaction-begin.json'), null)).kind).toBe('transaction');
    expectDecodeError(record(TOPIC, text('misc/transaction-begin.json'), null), 'MISSING_OP', 'no "op"', decoder);
  });

  it('a table named "transaction" is still a table', () => {
    const value = withTable(text('mysql/products-insert-noschema.json'), 'transaction');
    const ev = asChange(createDecoder().decode(record('dbserver1.inventory.transaction', value, '{"id":101}')));
    expect(ev.table.id).toBe('inventory.transaction');
  });

  it('a record without status BEGIN/END or without id is BAD_TRANSACTION', () => {
    expectDecodeError(record(TOPIC, '{"status":"COMMIT","id":"1"}', null), 'BAD_TRANSACTION', 'status "COMMIT"');
    expectDecodeError(record(TOPIC, '{"status":"BEGIN"}', null), 'BAD_TRANSACTION', 'no "id"');
  });
});

function withTable(json: string, table: string): string {
  const p = JSON.parse(json) as JsonObject;
  obj(p['source'])['table'] = table;
  return JSON.stringify(p);
}

// --- malformed input ---------------------------------------------------------------------------------

describe('malformed records', () => {
  const base = (): JsonObject => obj(parse('postgres/customers-insert-noschema.json'));
  const rec = (value: string | null, key: string | null = '{"id":1005}') => record(CUSTOMERS, value, key);

  it('MALFORMED_JSON gives the position of the error', () => {
    expectDecodeError(rec('{"op":"c","after":}'), 'MALFORMED_JSON', "value is not valid JSON: unexpected character '}' at position 18");
    expectDecodeError(rec('{"op":"c"'), 'MALFORMED_JSON', 'at position 9');
    expectDecodeError(rec('{"op":"c"} x'), 'MALFORMED_JSON', 'unexpected text after the JSON value at position 11');
    expectDecodeError(rec(text('postgres/customers-insert.json'), '{id:1}'), 'MALFORMED_JSON', 'key is not valid JSON: expected a property name in double quotes at position 1');
  });

  it('MALFORMED_JSON on a record whose schema is cached reports the position in the whole record', () => {
    const decoder = createDecoder();
    const good = minify(text('postgres/customers-insert.json'));
    decoder.decode(rec(good));
    const truncated = good.slice(0, -1);
    expectDecodeError(rec(truncated), 'MALFORMED_JSON', `at position ${truncated.length}`, decoder);
  });

  it('NOT_AN_ENVELOPE for JSON that is not an object', () => {
    expectDecodeError(rec('[1,2]'), 'NOT_AN_ENVELOPE', 'value is an array');
    expectDecodeError(rec('"hello"'), 'NOT_AN_ENVELOPE', 'value is a string');
    expectDecodeError(rec('{"schema":null,"payload":42}'), 'NOT_AN_ENVELOPE', 'value is a number');
  });

  it('MISSING_OP, UNKNOWN_OP (naming the op), MISSING_SOURCE, MISSING_TABLE', () => {
    const noOp = base();
    delete noOp['op'];
    expectDecodeError(rec(JSON.stringify(noOp)), 'MISSING_OP', 'value has no "op"');
    // An already unwrapped row (ExtractNewRecordState) has no op either.
    expectDecodeError(rec(JSON.stringify(ANNE)), 'MISSING_OP', 'value has no "op"');

    for (const op of ['m', 'x', 7]) {
      const p = base();
      p['op'] = op;
      expectDecodeError(rec(JSON.stringify(p)), 'UNKNOWN_OP', `unknown op ${JSON.stringify(op)}`);
    }

    const noSource = base();
    delete noSource['source'];
    expectDecodeError(rec(JSON.stringify(noSource)), 'MISSING_SOURCE', 'op "c" change has no "source" block');
    const stringSource = base();
    stringSource['source'] = 'pg';
    expectDecodeError(rec(JSON.stringify(stringSource)), 'MISSING_SOURCE', 'no "source"');

    const noTable = base();
    delete obj(noTable['source'])['table'];
    expectDecodeError(rec(JSON.stringify(noTable)), 'MISSING_TABLE', 'source block has no "table"');
  });

  it('MISSING_AFTER for c, r and u', () => {
    for (const op of ['c', 'r', 'u']) {
      const p = base();
      p['op'] = op;
      p['after'] = null;
      expectDecodeError(rec(JSON.stringify(p)), 'MISSING_AFTER', `op "${op}" change has no "after" row`);
      delete p['after'];
      expectDecodeError(rec(JSON.stringify(p)), 'MISSING_AFTER', 'no "after"');
    }
  });

  it('MISSING_KEY for c, u, r and d with a null or empty key; truncate needs none', () => {
    for (const op of ['c', 'u', 'r', 'd']) {
      const p = base();
      p['op'] = op;
      p['before'] = ANNE;
      expectDecodeError(rec(JSON.stringify(p), null), 'MISSING_KEY', `op "${op}" change has a null Kafka key`);
      expectDecodeError(rec(JSON.stringify(p), 'null'), 'MISSING_KEY', 'null Kafka key');
      expectDecodeError(rec(JSON.stringify(p), '{}'), 'MISSING_KEY', 'an empty key');
    }
    const t = asChange(createDecoder().decode(rec(payloadOnly(text('postgres/customers-truncate.json')), null)));
    expect(t.op).toBe('t');
    expect(t.key).toBeNull();
  });

  it('BAD_KEY and BAD_ROW for values of the wrong JSON type', () => {
    expectDecodeError(rec(JSON.stringify(base()), '1005'), 'BAD_KEY', 'key is a number, expected an object of key columns');
    const p = base();
    p['after'] = 'Anne';
    expectDecodeError(rec(JSON.stringify(p)), 'BAD_ROW', '"after" is a string');
    const q = base();
    q['before'] = [1];
    expectDecodeError(rec(JSON.stringify(q)), 'BAD_ROW', '"before" is an array');
  });

  describe('BAD_FIELD names the column', () => {
    const withAfter = (change: (after: JsonObject) => void): string => {
      const p = parse('postgres/all-types.json');
      change(obj(obj(p['payload'])['after']));
      return JSON.stringify(p);
    };
    const typed = (value: string) => record(ALL_TYPES, value, '{"id":1}');

    it.each([
      ['Json that does not parse', (a: JsonObject) => (a['doc'] = '{"a":'), 'column after.doc: io.debezium.data.Json value is not valid JSON: unexpected end of input at position 5'],
      ['Decimal that is not base64', (a: JsonObject) => (a['price'] = '***'), 'column after.price: expected base64 decimal bytes, got "***"'],
      ['Decimal array element', (a: JsonObject) => (a['prices'] = ['AOE=', '!!']), 'column after.prices[1]: expected base64 decimal bytes'],
      ['VariableScaleDecimal without scale', (a: JsonObject) => (a['amount'] = { value: 'AQ==' }), 'column after.amount: expected a {scale, value} struct'],
      ['Date that is not an integer', (a: JsonObject) => (a['birth'] = 1.5), 'column after.birth: expected an integer count of days, got 1.5'],
      ['MicroTime as text', (a: JsonObject) => (a['t'] = '12:00'), 'column after.t: expected an integer time of day'],
      ['MicroTimestamp that is not an integer', (a: JsonObject) => (a['ts'] = '2024-01-01'), 'column after.ts: expected an integer timestamp'],
      ['array of a semantic type', (a: JsonObject) => (a['dates'] = '2024-01-01'), 'column after.dates: expected an array, got "2024-01-01"'],
    ])('%s', (_name, change, message) => {
      const err = expectDecodeError(typed(withAfter(change)), 'BAD_FIELD', message);
      expect(err.message.startsWith(`${ALL_TYPES}/3@1042: ${message}`)).toBe(true);
    });
  });

  it('BAD_SCHEMA for a Decimal without a usable scale', () => {
    const p = parse('postgres/all-types.json');
    for (const row of arr(obj(p['schema'])['fields']).slice(0, 2)) {
      const price = arr(obj(row)['fields']).map(obj).find((f) => f['field'] === 'price')!;
      obj(price['parameters'])['scale'] = 'two';
    }
    expectDecodeError(record(ALL_TYPES, JSON.stringify(p), '{"id":1}'), 'BAD_SCHEMA', 'value schema of column price: org.apache.kafka.connect.data.Decimal has a bad scale parameter "two"');
  });

  it('empty options are a ConfigError at construction', () => {
    expect(() => createDecoder({ heartbeatTopicPrefix: '' })).toThrow(ConfigError);
    expect(() => createDecoder({ transactionTopicSuffix: '' })).toThrow(/transactionTopicSuffix: must not be empty/);
  });
});
