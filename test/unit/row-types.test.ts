import { describe, expect, it } from 'vitest';
import { interfaceNames, renderRowTypes } from '../../src/cli/row-types.ts';
import { createDecoder } from '../../src/decode/debezium.ts';
import { UNAVAILABLE, type ChangeEvent, type ColumnSchema } from '../../src/model/change-event.ts';
import { debeziumPayloads, debeziumSchemas, jsonConverterText, type Column, type TableSpec } from '../../src/testing/avro-envelope.ts';

const semantic = (name: string, type: string, extra: Partial<Column> = {}) => ({ type, name, version: 1, ...extra });

/**
 * One column per case: its Connect schema, a payload value as JsonConverter writes it, the type the
 * generated interface gives it, and what the decoder must make of the value for that type to hold.
 */
const CASES: readonly { column: Column; payload: unknown; ts: string; decoded: (v: unknown) => boolean }[] = [
  { column: { field: 'id', type: 'int32', optional: false }, payload: 7, ts: 'number', decoded: (v) => v === 7 },
  { column: { field: 'small', type: 'int16', optional: true }, payload: 3, ts: 'number | null', decoded: (v) => v === 3 },
  { column: { field: 'big', type: 'int64', optional: true }, payload: 9223372036854775807n, ts: 'Int64 | null', decoded: (v) => v === 9223372036854775807n },
  { column: { field: 'count', type: 'int64', optional: false }, payload: 12, ts: 'Int64', decoded: (v) => v === 12 },
  { column: { field: 'score', type: 'double', optional: true }, payload: 1.5, ts: 'number | null', decoded: (v) => v === 1.5 },
  { column: { field: 'ok', type: 'boolean', optional: false }, payload: true, ts: 'boolean', decoded: (v) => v === true },
  { column: { field: 'name', type: 'string', optional: true }, payload: 'Ada', ts: 'Toastable<string> | null', decoded: (v) => v === 'Ada' },
  {
    column: { field: 'bio', type: 'string', optional: true },
    payload: '__debezium_unavailable_value',
    ts: 'Toastable<string> | null',
    decoded: (v) => v === UNAVAILABLE,
  },
  {
    column: { field: 'price', optional: true, ...semantic('org.apache.kafka.connect.data.Decimal', 'bytes', { parameters: { scale: '2' } }) },
    payload: Buffer.from([0x04, 0xe2]).toString('base64'),
    ts: 'Toastable<Decimal> | null',
    decoded: (v) => v === '12.50',
  },
  {
    column: {
      field: 'amount',
      optional: true,
      ...semantic('io.debezium.data.VariableScaleDecimal', 'struct', {
        fields: [
          { field: 'scale', type: 'int32', optional: false },
          { field: 'value', type: 'bytes', optional: false },
        ],
      }),
    },
    payload: { scale: 1, value: Buffer.from([0x7b]).toString('base64') },
    ts: 'Decimal | null',
    decoded: (v) => v === '12.3',
  },
  { column: { field: 'day', optional: true, ...semantic('io.debezium.time.Date', 'int32') }, payload: 19782, ts: 'DateString | null', decoded: (v) => v === '2024-02-29' },
  {
    column: { field: 'at', optional: false, ...semantic('io.debezium.time.MicroTimestamp', 'int64') },
    payload: 1_700_000_000_123_456,
    ts: 'TimestampString',
    decoded: (v) => v === '2023-11-14T22:13:20.123456',
  },
  {
    column: { field: 'zoned', optional: true, ...semantic('io.debezium.time.ZonedTimestamp', 'string') },
    payload: '2024-01-31T13:45:00+01:00',
    ts: 'Toastable<TimestampString> | null',
    decoded: (v) => v === '2024-01-31T13:45:00+01:00',
  },
  { column: { field: 'starts', optional: true, ...semantic('io.debezium.time.MicroTime', 'int64') }, payload: 49_500_000_000, ts: 'TimeString | null', decoded: (v) => v === '13:45:00.000000' },
  { column: { field: 'doc', optional: true, ...semantic('io.debezium.data.Json', 'string') }, payload: '{"a":[1,2]}', ts: 'Toastable<Json> | null', decoded: (v) => JSON.stringify(v) === '{"a":[1,2]}' },
  {
    column: { field: 'mood', optional: true, ...semantic('io.debezium.data.Enum', 'string', { parameters: { allowed: 'happy,sad' } }) },
    payload: 'sad',
    ts: 'Toastable<"happy" | "sad"> | null',
    decoded: (v) => v === 'sad',
  },
  { column: { field: 'raw', type: 'bytes', optional: true }, payload: 'AQI=', ts: 'Toastable<string> | null', decoded: (v) => v === 'AQI=' },
  {
    column: { field: 'tags', type: 'array', optional: true, items: { type: 'string', optional: true } },
    payload: ['a', null],
    ts: 'Toastable<(string | null)[]> | null',
    decoded: (v) => JSON.stringify(v) === '["a",null]',
  },
  {
    column: { field: 'ids', type: 'array', optional: false, items: { type: 'int64', optional: false } },
    payload: [1, 2],
    ts: 'Toastable<Int64[]>',
    decoded: (v) => JSON.stringify(v) === '[1,2]',
  },
  {
    column: { field: 'attrs', type: 'map', optional: true, keys: { type: 'string', optional: false }, values: { type: 'string', optional: true } },
    payload: { k: 'v' },
    ts: 'Toastable<{ [key: string]: string | null }> | null',
    decoded: (v) => JSON.stringify(v) === '{"k":"v"}',
  },
  {
    column: {
      field: 'location',
      type: 'struct',
      name: 'io.debezium.data.geometry.Point',
      optional: true,
      fields: [
        { field: 'x', type: 'double', optional: false },
        { field: 'y', type: 'double', optional: false },
        { field: 'srid', type: 'int32', optional: true },
      ],
    },
    payload: { x: 1, y: 2, srid: null },
    ts: '{\n    x: number;\n    y: number;\n    srid: number | null;\n  } | null',
    decoded: (v) => JSON.stringify(v) === '{"x":1,"y":2,"srid":null}',
  },
  { column: { field: 'order-no', type: 'int32', optional: true }, payload: 5, ts: 'number | null', decoded: (v) => v === 5 },
];

const TABLE: TableSpec = { prefix: 'shop', table: 'everything', key: ['id'], columns: CASES.map((c) => c.column) };

/** The table's columns and row as the real decoder reports them for one update. */
function decodedUpdate(): ChangeEvent {
  const after = Object.fromEntries(CASES.map((c) => [c.column.field, c.payload]));
  const schemas = debeziumSchemas(TABLE);
  const payloads = debeziumPayloads(TABLE, { op: 'u', after, lsn: 100 });
  const decoded = createDecoder().decode({
    topic: 'shop.public.everything',
    partition: 0,
    offset: '0',
    timestamp: 0,
    key: Buffer.from(jsonConverterText(schemas.key, payloads.key)),
    value: Buffer.from(jsonConverterText(schemas.value, payloads.value)),
    headers: {},
  });
  if (decoded.kind !== 'change') throw new Error(`decoded a ${decoded.kind}`);
  return decoded;
}

describe('row types from the decoder’s columns', () => {
  const event = decodedUpdate();
  const text = renderRowTypes([{ id: event.table.id, columns: event.columns!, topic: 'shop.public.everything' }]);

  it('types every column as the value the decoder puts in the row', () => {
    for (const c of CASES) {
      expect(c.decoded(event.after![c.column.field]), `decoded ${c.column.field}: ${String(event.after![c.column.field])}`).toBe(true);
      const name = /^[A-Za-z_$][\w$]*$/.test(c.column.field) ? c.column.field : JSON.stringify(c.column.field);
      expect(text, c.column.field).toContain(`\n  ${name}: ${c.ts};\n`);
    }
  });

  it('writes the whole module: imports of the API value types used, the interface, the Tables map', () => {
    expect(text).toBe(
      [
        '// Generated by `cdc-router types` from the schemas of the change events on the topics; do not edit.',
        "import type { DateString, Decimal, Int64, Json, TimeString, TimestampString, Toastable } from \"cdc-router\";",
        '',
        '/** public.everything (topic shop.public.everything) */',
        'export interface Everything {',
        ...CASES.map((c) => `  ${/^[A-Za-z_$][\w$]*$/.test(c.column.field) ? c.column.field : JSON.stringify(c.column.field)}: ${c.ts};`),
        '}',
        '',
        '/** Row types by table id: `defineHandlers<Tables>()({ tables: { … } })`. */',
        'export interface Tables {',
        '  "public.everything": Everything;',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('imports only what it uses, from the module asked for; tables sorted by id', () => {
    const col = (name: string, type: string, optional = false): ColumnSchema => ({ name, type, semantic: undefined, optional, parameters: undefined, items: undefined });
    const out = renderRowTypes(
      [
        { id: 'public.orders', columns: [col('id', 'int32'), col('total', 'double', true)] },
        { id: 'public.empty', columns: [] },
      ],
      { importFrom: '../src/index.ts' },
    );
    expect(out).toBe(
      [
        '// Generated by `cdc-router types` from the schemas of the change events on the topics; do not edit.',
        '',
        '/** public.empty */',
        'export interface Empty {}',
        '',
        '/** public.orders */',
        'export interface Orders {',
        '  id: number;',
        '  total: number | null;',
        '}',
        '',
        '/** Row types by table id: `defineHandlers<Tables>()({ tables: { … } })`. */',
        'export interface Tables {',
        '  "public.empty": Empty;',
        '  "public.orders": Orders;',
        '}',
        '',
      ].join('\n'),
    );
    const withImport = renderRowTypes([{ id: 'public.orders', columns: [col('id', 'int64')] }], { importFrom: '../src/index.ts' });
    expect(withImport).toContain('import type { Int64 } from "../src/index.ts";\n');
  });
});

describe('interface names', () => {
  it('are the table names in PascalCase, qualified when two tables share one, never an imported name', () => {
    expect(
      Object.fromEntries(interfaceNames(['public.order_items', 'sales.customers', 'crm.customers', 'public.json', 'public.tables', 'public.2024_sales'])),
    ).toEqual({
      'public.order_items': 'OrderItems',
      'sales.customers': 'SalesCustomers',
      'crm.customers': 'CrmCustomers',
      'public.json': 'JsonRow',
      'public.tables': 'TablesRow',
      'public.2024_sales': 'T2024Sales',
    });
  });
});
