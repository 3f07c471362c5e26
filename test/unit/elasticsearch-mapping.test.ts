import { describe, expect, it } from 'vitest';
import { configSchema } from '../../connectors/elasticsearch/config.ts';
import { fieldMapping, mappingConflicts, mappingFromColumns, mergeProperties, missingFields, type FieldMapping } from '../../connectors/elasticsearch/mapping.ts';
import type { ColumnSchema } from '../../src/model/change-event.ts';

const col = (name: string, type: string, semantic?: string, extra: Partial<ColumnSchema> = {}): ColumnSchema => ({
  name,
  type,
  semantic,
  optional: true,
  parameters: undefined,
  items: undefined,
  ...extra,
});
const typeOf = (m: FieldMapping) => m['type'];

describe('elasticsearch mapping from the Connect schema', () => {
  it.each([
    [col('a', 'int16'), 'short'],
    [col('a', 'int64'), 'long'],
    [col('a', 'int64', 'io.debezium.time.MicroDuration'), 'long'],
    [col('a', 'int32', 'io.debezium.time.Year'), 'integer'],
    [col('a', 'bytes', 'org.apache.kafka.connect.data.Decimal', { parameters: { scale: '2' } }), 'double'],
    [col('a', 'struct', 'io.debezium.data.VariableScaleDecimal'), 'double'],
    [col('a', 'int32', 'io.debezium.time.Date'), 'date'],
    [col('a', 'int64', 'io.debezium.time.NanoTimestamp'), 'date'],
    [col('a', 'string', 'io.debezium.time.ZonedTimestamp'), 'date'],
    [col('a', 'int64', 'io.debezium.time.MicroTime'), 'keyword'],
    [col('a', 'string', 'io.debezium.time.Interval'), 'keyword'],
    [col('a', 'string', 'io.debezium.data.Uuid'), 'keyword'],
    [col('a', 'string', 'io.debezium.data.Enum'), 'keyword'],
    [col('a', 'string'), 'text'],
    [col('a', 'string', undefined, { parameters: { '__debezium.source.column.length': '40' } }), 'keyword'],
    [col('a', 'string', undefined, { parameters: { '__debezium.source.column.length': '4000' } }), 'text'],
    [col('a', 'bytes'), 'binary'],
    [col('a', 'string', 'io.debezium.data.Json'), 'flattened'],
    [col('a', 'map'), 'flattened'],
    [col('a', 'array', undefined, { items: col('', 'int32', 'io.debezium.time.Date') }), 'date'],
    [col('a', 'array', undefined, { items: col('', 'array', undefined, { items: col('', 'boolean') }) }), 'boolean'],
  ])('%o -> %s', (column, type) => {
    expect(typeOf(fieldMapping(column, 'flattened'))).toBe(type);
  });

  it('gives long text a keyword sub-field for short values only, and decoder formats to temporal types', () => {
    expect(fieldMapping(col('a', 'string'), 'flattened')).toEqual({ type: 'text', fields: { keyword: { type: 'keyword', ignore_above: 256 } } });
    expect(fieldMapping(col('a', 'int64', 'io.debezium.time.MicroTimestamp'), 'flattened')).toEqual({
      type: 'date',
      format: "uuuu-MM-dd'T'HH:mm:ss.SSSSSS||strict_date_optional_time_nanos",
      fields: { nanos: { type: 'date_nanos', format: "uuuu-MM-dd'T'HH:mm:ss.SSSSSS||strict_date_optional_time_nanos", ignore_malformed: true } },
    });
  });

  it('maps Json columns per mode and structs by their fields', () => {
    const json = col('doc', 'string', 'io.debezium.data.Json');
    const point = col('p', 'struct', 'io.debezium.data.geometry.Point', { fields: [col('x', 'double'), col('wkb', 'bytes')] });
    const modes: Record<string, 'flattened' | 'disabled' | 'object'> = { doc: 'disabled' };
    expect(mappingFromColumns([json, point], (c) => modes[c] ?? 'object')).toEqual({
      doc: { type: 'object', enabled: false },
      p: { properties: { x: { type: 'double' }, wkb: { type: 'binary' } } },
    });
    expect(fieldMapping(json, 'object')).toEqual({ type: 'object', dynamic: true });
  });
});

describe('elasticsearch mapping conflicts and additions', () => {
  const wanted: Record<string, FieldMapping> = {
    price: { type: 'double' },
    n: { type: 'integer' },
    name: { type: 'keyword' },
    doc: { type: 'flattened' },
    p: { properties: { x: { type: 'double' }, y: { type: 'double' } } },
    added: { type: 'date' },
  };

  it('names each field whose existing type cannot hold its column, and accepts wider or equivalent ones', () => {
    const existing: Record<string, FieldMapping> = {
      price: { type: 'text', fields: { keyword: { type: 'keyword' } } },
      n: { type: 'long' },
      name: { type: 'text' },
      doc: { properties: { nested: { properties: { arr: { type: 'long' } } } } },
      p: { properties: { x: { type: 'keyword' } } },
    };
    expect(mappingConflicts(existing, wanted)).toEqual([
      { field: 'price', existing: 'text', wanted: 'double' },
      { field: 'doc', existing: 'object', wanted: 'flattened' },
      { field: 'p.x', existing: 'keyword', wanted: 'double' },
    ]);
    expect(mappingConflicts({ n: { type: 'short' } }, { n: { type: 'integer' } })).toEqual([{ field: 'n', existing: 'short', wanted: 'integer' }]);
    expect(mappingConflicts({ n: { type: 'double' } }, { n: { type: 'long' } })).toHaveLength(1);
    expect(mappingConflicts({ t: { type: 'date_nanos' }, d: { type: 'scaled_float' } }, { t: { type: 'date' }, d: { type: 'double' } })).toEqual([]);
  });

  it('finds the fields to add, also inside structs, and merges them into what is known', () => {
    const existing: Record<string, FieldMapping> = { price: { type: 'double' }, n: { type: 'integer' }, name: { type: 'keyword' }, doc: { type: 'flattened' }, p: { properties: { x: { type: 'double' } } } };
    const missing = missingFields(existing, wanted);
    expect(missing).toEqual({ p: { properties: { y: { type: 'double' } } }, added: { type: 'date' } });
    mergeProperties(existing, missing);
    expect(existing['p']).toEqual({ properties: { x: { type: 'double' }, y: { type: 'double' } } });
    expect(missingFields(existing, wanted)).toEqual({});
  });
});

describe('elasticsearch json_columns config', () => {
  it('defaults to flattened, takes a mode per table column, and refuses unknown modes with their path', () => {
    const base = { nodes: 'http://127.0.0.1:9200' };
    expect(configSchema.parse(base).json_columns).toBe('flattened');
    const c = configSchema.parse({ ...base, json_columns: 'disabled', tables: { 'public.users': { json_columns: { prefs: 'object' } } } });
    expect(c.json_columns).toBe('disabled');
    expect(c.tables['public.users']?.json_columns).toEqual({ prefs: 'object' });
    const bad = configSchema.safeParse({ ...base, tables: { 'public.users': { json_columns: { prefs: 'nested' } } } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['tables', 'public.users', 'json_columns', 'prefs']);
  });
});
