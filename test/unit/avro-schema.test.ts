import { describe, expect, it } from 'vitest';
import { readZigZagVarint, writeZigZagVarint } from '../../src/decode/avro-long.ts';
import { AvroSchemaProblem, compileAvroSchema, type CompiledAvroSchema, type ConnectSchema } from '../../src/decode/avro-schema.ts';
import { AvroBodyProblem } from '../../src/decode/avro-json.ts';
import { avroSchemaOf, avroValueOf, type ConnectInput } from '../../src/testing/avro-envelope.ts';

/** What Connect's AvroConverter registers for a Debezium PostgreSQL table (abridged source block). */
const DEBEZIUM_VALUE = {
  type: 'record',
  name: 'Envelope',
  namespace: 'shop.public.orders',
  fields: [
    {
      name: 'before',
      type: [
        'null',
        {
          type: 'record',
          name: 'Value',
          fields: [
            { name: 'id', type: 'long' },
            { name: 'qty', type: { type: 'int', 'connect.type': 'int16' } },
            {
              name: 'price',
              type: [
                'null',
                {
                  type: 'bytes',
                  scale: 2,
                  precision: 10,
                  'connect.version': 1,
                  'connect.parameters': { scale: '2', 'connect.decimal.precision': '10' },
                  'connect.name': 'org.apache.kafka.connect.data.Decimal',
                  logicalType: 'decimal',
                },
              ],
              default: null,
            },
            // A plain Avro decimal (another producer): the scale from the attribute.
            { name: 'fee', type: ['null', { type: 'bytes', logicalType: 'decimal', precision: 6, scale: 3 }], default: null },
            {
              name: 'amount',
              type: [
                'null',
                {
                  type: 'record',
                  name: 'VariableScaleDecimal',
                  namespace: 'io.debezium.data',
                  fields: [
                    { name: 'scale', type: 'int' },
                    { name: 'value', type: 'bytes' },
                  ],
                  'connect.doc': 'Variable scaled decimal',
                  'connect.version': 1,
                  'connect.name': 'io.debezium.data.VariableScaleDecimal',
                },
              ],
              default: null,
            },
            { name: 'created', type: ['null', { type: 'long', 'connect.version': 1, 'connect.name': 'io.debezium.time.MicroTimestamp' }], default: null },
            { name: 'shipped', type: [{ type: 'string', 'connect.version': 1, 'connect.name': 'io.debezium.time.ZonedTimestamp' }, 'null'], default: '1970-01-01T00:00:00Z' },
            { name: 'day', type: ['null', { type: 'int', 'connect.version': 1, 'connect.name': 'io.debezium.time.Date' }], default: null },
            { name: 'doc', type: ['null', { type: 'string', 'connect.version': 1, 'connect.name': 'io.debezium.data.Json' }], default: null },
            { name: 'tags', type: ['null', { type: 'array', items: ['null', 'string'] }], default: null },
            { name: 'due', type: ['null', { type: 'int', 'connect.version': 1, 'connect.name': 'org.apache.kafka.connect.data.Date', logicalType: 'date' }], default: null },
            { name: 'seen', type: ['null', { type: 'long', logicalType: 'timestamp-micros' }], default: null },
            { name: 'attrs', type: ['null', { type: 'map', values: ['null', 'long'] }], default: null },
            { name: 'mood', type: ['null', { type: 'enum', name: 'Mood', symbols: ['sad', 'ok', 'happy'] }], default: null },
            { name: 'digest', type: ['null', { type: 'fixed', name: 'Digest', size: 4 }], default: null },
            { name: 'ratio', type: ['null', 'float'], default: null },
            { name: 'score', type: ['null', 'double'], default: null },
            { name: 'flag', type: 'boolean' },
          ],
          'connect.name': 'shop.public.orders.Value',
        },
      ],
      default: null,
    },
    { name: 'after', type: ['null', 'Value'], default: null },
    {
      name: 'source',
      type: {
        type: 'record',
        name: 'Source',
        namespace: 'io.debezium.connector.postgresql',
        fields: [
          { name: 'connector', type: 'string' },
          { name: 'table', type: 'string' },
          { name: 'lsn', type: ['null', 'long'], default: null },
          { name: 'ts_ns', type: ['null', 'long'], default: null },
        ],
        'connect.name': 'io.debezium.connector.postgresql.Source',
      },
    },
    { name: 'op', type: 'string' },
    { name: 'ts_ms', type: ['null', 'long'], default: null },
  ],
  'connect.version': 2,
  'connect.name': 'shop.public.orders.Envelope',
};

function fieldOf(c: CompiledAvroSchema, ...path: string[]): unknown {
  let node: ConnectSchema = c.connect;
  for (const name of path) {
    const next = node.fields?.find((f) => f.field === name);
    if (!next) throw new Error(`no field ${path.join('.')}`);
    node = next;
  }
  return node;
}

function roundTrip(c: CompiledAvroSchema, value: unknown): unknown {
  return JSON.parse(c.readJson(c.type.toBuffer(value), 0));
}

const row = {
  id: 1,
  qty: 7,
  price: Buffer.from([0xfb, 0x2e]), // -1234 unscaled
  fee: Buffer.from([0x30, 0x39]),
  amount: { scale: 4, value: Buffer.from([0xed, 0x29, 0x79]) },
  created: 1718454896123456,
  shipped: '2024-06-15T10:34:56.123456Z',
  day: 19782,
  doc: '{"a":[1,2]}',
  tags: ['a', null, 'c "quoted" \\ \n'],
  due: 0,
  seen: -1,
  attrs: { x: 1, y: null },
  mood: 'happy',
  digest: Buffer.from([1, 2, 3, 4]),
  ratio: 0.1,
  score: 2.5,
  flag: true,
};

describe('Avro schema to Connect schema', () => {
  const c = compileAvroSchema(DEBEZIUM_VALUE);

  it('names structs after connect.name, or the Avro full name', () => {
    expect(c.connect).toMatchObject({ type: 'struct', optional: false, name: 'shop.public.orders.Envelope', version: 2 });
    expect(fieldOf(c, 'source')).toMatchObject({ type: 'struct', optional: false, name: 'io.debezium.connector.postgresql.Source' });
    expect(fieldOf(c, 'op')).toEqual({ type: 'string', optional: false, field: 'op' });
    expect(fieldOf(c, 'ts_ms')).toEqual({ type: 'int64', optional: true, field: 'ts_ms' });
  });

  it('makes the same row struct of before and of after (a named reference)', () => {
    const before = fieldOf(c, 'before') as { fields: unknown[] };
    const after = fieldOf(c, 'after') as { fields: unknown[] };
    expect(before).toMatchObject({ type: 'struct', optional: true, name: 'shop.public.orders.Value' });
    expect(after.fields).toEqual(before.fields);
  });

  it('keeps the semantic types: decimals with their scale, temporal types, json, int16', () => {
    expect(fieldOf(c, 'after', 'id')).toEqual({ type: 'int64', optional: false, field: 'id' });
    expect(fieldOf(c, 'after', 'qty')).toEqual({ type: 'int16', optional: false, field: 'qty' });
    expect(fieldOf(c, 'after', 'price')).toEqual({
      type: 'bytes',
      optional: true,
      name: 'org.apache.kafka.connect.data.Decimal',
      version: 1,
      parameters: { scale: '2', 'connect.decimal.precision': '10' },
      field: 'price',
    });
    expect(fieldOf(c, 'after', 'fee')).toEqual({
      type: 'bytes',
      optional: true,
      name: 'org.apache.kafka.connect.data.Decimal',
      parameters: { scale: '3', 'connect.decimal.precision': '6' },
      field: 'fee',
    });
    expect(fieldOf(c, 'after', 'amount')).toMatchObject({ type: 'struct', optional: true, name: 'io.debezium.data.VariableScaleDecimal', version: 1 });
    expect(fieldOf(c, 'after', 'created')).toEqual({ type: 'int64', optional: true, name: 'io.debezium.time.MicroTimestamp', version: 1, field: 'created' });
    expect(fieldOf(c, 'after', 'shipped')).toEqual({ type: 'string', optional: true, name: 'io.debezium.time.ZonedTimestamp', version: 1, field: 'shipped' });
    expect(fieldOf(c, 'after', 'day')).toEqual({ type: 'int32', optional: true, name: 'io.debezium.time.Date', version: 1, field: 'day' });
    expect(fieldOf(c, 'after', 'doc')).toEqual({ type: 'string', optional: true, name: 'io.debezium.data.Json', version: 1, field: 'doc' });
    expect(fieldOf(c, 'after', 'due')).toEqual({ type: 'int32', optional: true, name: 'org.apache.kafka.connect.data.Date', version: 1, field: 'due' });
    // A logical type alone names the Connect type it stands for.
    expect(fieldOf(c, 'after', 'seen')).toEqual({ type: 'int64', optional: true, name: 'io.debezium.time.MicroTimestamp', field: 'seen' });
    expect(fieldOf(c, 'after', 'ratio')).toEqual({ type: 'float', optional: true, field: 'ratio' });
    expect(fieldOf(c, 'after', 'score')).toEqual({ type: 'double', optional: true, field: 'score' });
  });

  it('converts arrays, maps, enums and fixed', () => {
    expect(fieldOf(c, 'after', 'tags')).toEqual({ type: 'array', items: { type: 'string', optional: true }, optional: true, field: 'tags' });
    expect(fieldOf(c, 'after', 'attrs')).toEqual({
      type: 'map',
      keys: { type: 'string', optional: false },
      values: { type: 'int64', optional: true },
      optional: true,
      field: 'attrs',
    });
    expect(fieldOf(c, 'after', 'mood')).toEqual({ type: 'string', optional: true, name: 'shop.public.orders.Mood', field: 'mood' });
    expect(fieldOf(c, 'after', 'digest')).toEqual({ type: 'bytes', optional: true, field: 'digest' });
  });

  it('turns a union of several types into Connect\'s Union struct, and MapEntry arrays into maps', () => {
    const u = compileAvroSchema({ type: 'record', name: 'R', fields: [{ name: 'v', type: ['null', 'int', 'string', { type: 'record', name: 'P', namespace: 'x', fields: [{ name: 'a', type: 'int' }] }] }] });
    expect(fieldOf(u, 'v')).toEqual({
      type: 'struct',
      optional: true,
      name: 'io.confluent.connect.avro.Union',
      fields: [
        { type: 'int32', optional: true, field: 'int' },
        { type: 'string', optional: true, field: 'string' },
        { type: 'struct', optional: true, name: 'x.P', fields: [{ type: 'int32', optional: false, field: 'a' }], field: 'P' },
      ],
      field: 'v',
    });
    const connect: ConnectInput = {
      type: 'struct',
      name: 'M',
      optional: false,
      fields: [{ type: 'map', optional: true, field: 'm', keys: { type: 'int32', optional: false }, values: { type: 'int32', optional: true, name: 'io.debezium.time.Date', version: 1 } }],
    };
    const m = compileAvroSchema(avroSchemaOf(connect));
    expect(m.connect).toEqual(connect);
    expect(roundTrip(m, avroValueOf(connect, { m: [[1, 19782], [2, null]] }))).toEqual({ m: [[1, 19782], [2, null]] });
  });

  it('refuses what a Connect schema cannot express, saying where', () => {
    const recursive = { type: 'record', name: 'Node', fields: [{ name: 'next', type: ['null', 'Node'] }] };
    expect(() => compileAvroSchema(recursive)).toThrow(/Node\.next: type Node contains itself/);
    expect(() => compileAvroSchema({ type: 'record', name: 'R', fields: [{ name: 'x', type: 'other.Thing' }] })).toThrow(
      /R\.x: unknown type other\.Thing \(schema references are not supported\)/,
    );
    expect(() => compileAvroSchema({ type: 'record', name: 'R', fields: [{ name: 'x', type: ['null'] }] })).toThrow(AvroSchemaProblem);
    expect(() => compileAvroSchema('null')).toThrow(/has no Connect type/);
    expect(() => compileAvroSchema({ type: 'record', name: 'R', fields: [{ name: 'a', type: { type: 'enum', name: 'R', symbols: ['x'] } }] })).toThrow(/defined twice/);
  });
});

describe('Avro values to the JSON payload form', () => {
  const c = compileAvroSchema(DEBEZIUM_VALUE);
  const envelope = (after: unknown) => ({ before: null, after, source: { connector: 'postgresql', table: 'orders', lsn: 24023128, ts_ns: '1730000500000000123' }, op: 'c', ts_ms: 1730000500001 });

  it('writes what JsonConverter writes: base64 bytes, unwrapped unions, float32 as printed by Java', () => {
    const json = roundTrip(c, envelope(row)) as { after: Record<string, unknown>; source: Record<string, unknown> };
    expect(json.after).toEqual({
      id: 1,
      qty: 7,
      price: '+y4=',
      fee: 'MDk=',
      amount: { scale: 4, value: '7Sl5' },
      created: 1718454896123456,
      shipped: '2024-06-15T10:34:56.123456Z',
      day: 19782,
      doc: '{"a":[1,2]}',
      tags: ['a', null, 'c "quoted" \\ \n'],
      due: 0,
      seen: -1,
      attrs: { x: 1, y: null },
      mood: 'happy',
      digest: 'AQIDBA==',
      ratio: 0.1,
      score: 2.5,
      flag: true,
    });
    expect(json.source).toEqual({ connector: 'postgresql', table: 'orders', lsn: 24023128, ts_ns: '1730000500000000123' });
  });

  it('keeps nulls and the field order of the schema', () => {
    const nulls = { ...row, price: null, fee: null, amount: null, created: null, shipped: null, day: null, doc: null, tags: null, due: null, seen: null, attrs: null, mood: null, digest: null, ratio: null, score: null };
    const text = c.readJson(c.type.toBuffer(envelope(nulls)), 0);
    expect(text.startsWith('{"before":null,"after":{"id":1,"qty":7,"price":null,"fee":null,')).toBe(true);
    expect(text.endsWith(',"op":"c","ts_ms":1730000500001}')).toBe(true);
  });

  it('writes NaN and the infinities as strings, and every float32 as its shortest decimal', () => {
    const f = compileAvroSchema({ type: 'record', name: 'F', fields: [{ name: 'f', type: 'float' }, { name: 'd', type: 'double' }] });
    expect(roundTrip(f, { f: NaN, d: Infinity })).toEqual({ f: 'NaN', d: 'Infinity' });
    expect(roundTrip(f, { f: -Infinity, d: -0 })).toEqual({ f: '-Infinity', d: 0 });
    for (const v of [0.1, 1.5, 3.4028234663852886e38, 1e-45, 123456.789, -2.5e-10, 16777217]) {
      const out = (roundTrip(f, { f: v, d: v }) as { f: number; d: number });
      expect(Math.fround(out.f)).toBe(Math.fround(v));
      expect(String(out.f).length).toBeLessThanOrEqual(String(Math.fround(v)).length);
      expect(out.d).toBe(v);
    }
    expect((roundTrip(f, { f: 0.1, d: 0 }) as { f: number }).f).toBe(0.1);
  });

  it('copies strings byte for byte, escaping only what JSON needs', () => {
    const s = compileAvroSchema({ type: 'record', name: 'S', fields: [{ name: 's', type: 'string' }] });
    const samples = ['', 'plain', 'é ü ß 漢字 🎉', '"\\/', '\u0000\u0001\u001f\t\r\n\b\f', 'x'.repeat(100), `${'y'.repeat(70)}"`, '\u2028\u2029'];
    for (const v of samples) expect(roundTrip(s, { s: v })).toEqual({ s: v });
  });

  it('writes base64 exactly, short and long', () => {
    const b = compileAvroSchema({ type: 'record', name: 'B', fields: [{ name: 'b', type: 'bytes' }] });
    for (let n = 0; n < 10; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 97 + 13) & 255));
      expect(roundTrip(b, { b: bytes })).toEqual({ b: bytes.toString('base64') });
    }
    const big = Buffer.alloc(5000, 0xab);
    expect(roundTrip(b, { b: big })).toEqual({ b: big.toString('base64') });
  });

  it('reads arrays and maps written in several blocks, and blocks with byte sizes', () => {
    const a = compileAvroSchema({ type: 'record', name: 'A', fields: [{ name: 'a', type: { type: 'array', items: 'int' } }, { name: 'm', type: { type: 'map', values: 'string' } }] });
    const zz = (n: number) => writeZigZagVarint(n);
    const str = (t: string) => Buffer.concat([zz(Buffer.byteLength(t)), Buffer.from(t)]);
    // a: block of 2 [1, 2], block of -1 with its byte size (1 byte) [3], end; m: block of 1 {k: "v"}, end.
    const body = Buffer.concat([zz(2), zz(1), zz(2), zz(-1), zz(1), zz(3), zz(0), zz(1), str('k'), str('v'), zz(0)]);
    expect(JSON.parse(a.readJson(body, 0))).toEqual({ a: [1, 2, 3], m: { k: 'v' } });
  });

  it('writes unions of several types as Connect\'s Union struct', () => {
    const u = compileAvroSchema({ type: 'record', name: 'R', fields: [{ name: 'v', type: ['null', 'int', 'string'] }] });
    expect(roundTrip(u, { v: { string: 'x' } })).toEqual({ v: { int: null, string: 'x' } });
    expect(roundTrip(u, { v: { int: 5 } })).toEqual({ v: { int: 5, string: null } });
    expect(roundTrip(u, { v: null })).toEqual({ v: null });
  });

  it('is exact for longs over the whole int64 range, across every varint length', () => {
    const l = compileAvroSchema({ type: 'record', name: 'L', fields: [{ name: 'l', type: 'long' }] });
    const edges = [0n, 1n, -1n, 63n, -64n, 64n, 2n ** 47n, -(2n ** 47n), 2n ** 48n - 1n, 2n ** 48n, -(2n ** 48n) - 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 55n + 7n, 2n ** 62n, 2n ** 63n - 1n, -(2n ** 63n), 1730000500000000123n, -62135596800000000n];
    let x = 0x2545f4914f6cdd1dn;
    const random: bigint[] = [];
    for (let i = 0; i < 3000; i++) {
      x ^= (x << 13n) & 0xffffffffffffffffn;
      x ^= x >> 7n;
      x ^= (x << 17n) & 0xffffffffffffffffn;
      random.push(BigInt.asIntN(64, x) >> BigInt(i % 64));
    }
    for (const v of [...edges, ...random]) {
      const text = l.readJson(Buffer.concat([writeZigZagVarint(v)]), 0);
      const safe = v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
      expect(text, String(v)).toBe(safe ? `{"l":${v}}` : `{"l":"${v}"}`);
      const back = readZigZagVarint(writeZigZagVarint(v));
      expect(String(back)).toBe(String(v));
    }
  });

  it('refuses bodies that are not what the schema says', () => {
    const good = c.type.toBuffer(envelope(row));
    const problem = (bytes: Buffer) => {
      try {
        c.readJson(bytes, 0);
      } catch (e) {
        expect(e).toBeInstanceOf(AvroBodyProblem);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(problem(good.subarray(0, good.length - 3))).toMatch(/ends early/);
    expect(problem(Buffer.concat([good, Buffer.from([0])]))).toMatch(/1 byte\(s\) follow the Avro body/);
    expect(problem(Buffer.from([4]))).toMatch(/union branch 2 of 2/);
    expect(problem(Buffer.alloc(0))).toMatch(/ends early/);
    const b = compileAvroSchema({ type: 'record', name: 'B', fields: [{ name: 'b', type: 'boolean' }, { name: 'e', type: { type: 'enum', name: 'E', symbols: ['x'] } }] });
    expect(() => b.readJson(Buffer.from([2, 0]), 0)).toThrow(/a boolean byte 2/);
    expect(() => b.readJson(Buffer.from([1, 2]), 0)).toThrow(/enum index 1 of 1 symbols/);
    const s = compileAvroSchema({ type: 'record', name: 'S', fields: [{ name: 's', type: 'string' }] });
    expect(() => s.readJson(writeZigZagVarint(-3), 0)).toThrow(/a negative length -3/);
    expect(() => s.readJson(writeZigZagVarint(1000), 0)).toThrow(/ends early/);
    const a = compileAvroSchema({ type: 'record', name: 'A', fields: [{ name: 'a', type: { type: 'array', items: 'long' } }] });
    expect(() => a.readJson(writeZigZagVarint(1_000_000), 0)).toThrow(/a block of 1000000 items/);
    const l = compileAvroSchema({ type: 'record', name: 'L', fields: [{ name: 'l', type: 'long' }] });
    expect(() => l.readJson(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 0)).toThrow(/more than 10 bytes/);
  });
});
