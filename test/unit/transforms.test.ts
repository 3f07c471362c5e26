import { describe, expect, it } from 'vitest';
import { UNAVAILABLE, type ChangeEvent, type ColumnSchema, type Op } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { builtinTransformKinds, createTransform, transformConfigSchema } from '../../src/compose/transform-kinds.ts';
import type { Transform } from '../../src/transform/transform.ts';
import { dropFieldsTransform } from '../../transforms/drop-fields.ts';
import { filterBy, filterTransform } from '../../transforms/filter.ts';
import { flattenTransform } from '../../transforms/flatten.ts';
import { renameFieldsTransform } from '../../transforms/rename-fields.ts';

function col(name: string, type = 'string'): ColumnSchema {
  return { name, type, semantic: undefined, optional: true, parameters: undefined, items: undefined };
}

function event(over: Partial<ChangeEvent> & { op: Op }): ChangeEvent {
  return {
    kind: 'change',
    table: { id: 'public.users', db: 'app', schema: 'public', table: 'users' },
    key: { id: 1 },
    before: null,
    after: null,
    source: {
      connector: 'postgresql',
      name: 'app',
      db: 'app',
      schema: 'public',
      table: 'users',
      tsMs: 1_700_000_000_000,
      snapshot: undefined,
      raw: { lsn: 123456 },
    },
    position: position('kafka-offset', [1n]),
    tsMs: 1_700_000_000_500,
    kafka: { topic: 'app.public.users', partition: 0, offset: '42', timestamp: 1_700_000_000_600 },
    columns: undefined,
    ...over,
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Applies a transform to a frozen event (a mutation throws in strict mode) and checks it is unchanged. */
function run(t: Transform, e: ChangeEvent): ChangeEvent | null {
  const snapshot = JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  const out = t(deepFreeze(e));
  expect(JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))).toBe(snapshot);
  return out;
}

const filter = (config: unknown): Transform => filterTransform.create(filterTransform.configSchema.parse(config));
const rename = (config: unknown): Transform => renameFieldsTransform.create(renameFieldsTransform.configSchema.parse(config));
const drop = (config: unknown): Transform => dropFieldsTransform.create(dropFieldsTransform.configSchema.parse(config));
const flatten = (config: unknown): Transform => flattenTransform.create(flattenTransform.configSchema.parse(config));

describe('filter', () => {
  const ins = event({ op: 'c', after: { id: 1, status: 'active', n: 5n, tags: ['a', 'b'] } });
  const del = event({ op: 'd', before: { id: 1, status: 'gone' } });

  it('keeps only the listed ops and drops excluded ones', () => {
    const onlyDeletes = filter({ ops: ['d'] });
    expect(run(onlyDeletes, ins)).toBeNull();
    expect(run(onlyDeletes, del)).toBe(del);
    const noTruncates = filter({ exclude_ops: ['t'] });
    expect(run(noTruncates, event({ op: 't' }))).toBeNull();
    expect(run(noTruncates, ins)).toBe(ins);
    expect(run(filter({ ops: ['c', 'd'], exclude_ops: ['d'] }), del)).toBeNull();
  });

  it('evaluates where on after, and on before for deletes', () => {
    const active = filter({ where: { field: 'status', equals: 'active' } });
    expect(run(active, ins)).toBe(ins);
    expect(run(active, del)).toBeNull();
    expect(run(filter({ where: { field: 'status', equals: 'gone' } }), del)).toBe(del);
  });

  it('uses the key for a delete without before image', () => {
    const t = filter({ where: { field: 'id', in: [1, 2] } });
    expect(run(t, event({ op: 'd', key: { id: 2 } }))).not.toBeNull();
    expect(run(t, event({ op: 'd', key: { id: 3 } }))).toBeNull();
  });

  it('supports not_equals, in, exists and null', () => {
    expect(run(filter({ where: { field: 'status', not_equals: 'active' } }), ins)).toBeNull();
    expect(run(filter({ where: { field: 'status', in: ['x', 'active'] } }), ins)).toBe(ins);
    expect(run(filter({ where: { field: 'status', exists: true } }), ins)).toBe(ins);
    expect(run(filter({ where: { field: 'missing', exists: true } }), ins)).toBeNull();
    expect(run(filter({ where: { field: 'missing', exists: false } }), ins)).toBe(ins);
    const nullStatus = event({ op: 'u', after: { id: 1, status: null } });
    expect(run(filter({ where: { field: 'status', equals: null } }), nullStatus)).toBe(nullStatus);
    expect(run(filter({ where: { field: 'status', exists: false } }), nullStatus)).toBe(nullStatus);
    expect(run(filter({ where: { field: 'status', not_equals: 'active' } }), nullStatus)).toBe(nullStatus);
  });

  it('compares bigints with numbers and arrays deeply', () => {
    expect(run(filter({ where: { field: 'n', equals: 5 } }), ins)).toBe(ins);
    expect(run(filter({ where: { field: 'tags', equals: ['a', 'b'] } }), ins)).toBe(ins);
    expect(run(filter({ where: { field: 'tags', equals: ['b', 'a'] } }), ins)).toBeNull();
  });

  it('does not read inherited properties as columns', () => {
    expect(run(filter({ where: { field: 'constructor', exists: true } }), ins)).toBeNull();
  });

  it('passes truncates through a where predicate', () => {
    const t = event({ op: 't' });
    expect(run(filter({ where: { field: 'status', equals: 'active' } }), t)).toBe(t);
  });

  it('falls back to before for an unavailable value and throws when unknown', () => {
    const t = filter({ where: { field: 'body', equals: 'x' } });
    const known = event({ op: 'u', before: { id: 1, body: 'x' }, after: { id: 1, body: UNAVAILABLE } });
    expect(t(known)).toBe(known);
    expect(() => t(event({ op: 'u', after: { id: 1, body: UNAVAILABLE } }))).toThrow(/unavailable/);
    const exists = event({ op: 'u', after: { id: 1, body: UNAVAILABLE } });
    expect(filter({ where: { field: 'body', exists: true } })(exists)).toBe(exists);
  });

  it('rejects bad configs', () => {
    const schema = filterTransform.configSchema;
    expect(schema.safeParse({ ops: ['x'] }).success).toBe(false);
    expect(schema.safeParse({ ops: [] }).success).toBe(false);
    expect(schema.safeParse({ where: { field: 'a' } }).success).toBe(false);
    expect(schema.safeParse({ where: { field: '', equals: 1 } }).success).toBe(false);
    expect(schema.safeParse({ where: { field: 'a', equal: 1 } }).success).toBe(false);
    expect(schema.safeParse({ op: ['c'] }).success).toBe(false);
    expect(schema.safeParse({ where: { field: 'a', equals: { nested: [1, null] } } }).success).toBe(true);
  });

  it('filterBy keeps what the predicate accepts', () => {
    const t = filterBy((e) => e.op !== 'r');
    expect(t(ins)).toBe(ins);
    expect(t(event({ op: 'r' }))).toBeNull();
  });
});

describe('rename_fields', () => {
  const e = event({
    op: 'u',
    key: { id: 1 },
    before: { id: 1, name: 'a', other: 1 },
    after: { id: 1, name: 'b', other: 1 },
    columns: [col('id', 'int32'), col('name'), col('other', 'int32')],
  });

  it('renames in before, after, key and columns', () => {
    const out = run(rename({ fields: { id: 'user_id', name: 'full_name' } }), e);
    expect(out?.key).toEqual({ user_id: 1 });
    expect(out?.before).toEqual({ user_id: 1, full_name: 'a', other: 1 });
    expect(out?.after).toEqual({ user_id: 1, full_name: 'b', other: 1 });
    expect(out?.columns?.map((c) => c.name)).toEqual(['user_id', 'full_name', 'other']);
    expect(out?.columns?.[0]?.type).toBe('int32');
  });

  it('swaps two columns and keeps unrelated events as they are', () => {
    const out = run(rename({ fields: { name: 'other', other: 'name' } }), e);
    expect(out?.after).toEqual({ id: 1, other: 'b', name: 1 });
    const t = rename({ fields: { nope: 'x' } });
    expect(run(t, e)).toBe(e);
  });

  it('throws when a rename would overwrite an existing column', () => {
    expect(() => rename({ fields: { name: 'other' } })(e)).toThrow(/cannot rename name to other/);
  });

  it('rejects bad configs', () => {
    const schema = renameFieldsTransform.configSchema;
    const twoToOne = schema.safeParse({ fields: { a: 'x', b: 'x' } });
    expect(twoToOne.success).toBe(false);
    expect(twoToOne.error?.issues[0]?.message).toMatch(/a and b both rename to x/);
    expect(schema.safeParse({ fields: {} }).success).toBe(false);
    expect(schema.safeParse({ fields: { a: '' } }).success).toBe(false);
    expect(schema.safeParse({ fields: { a: 1 } }).success).toBe(false);
    expect(schema.safeParse({ fields: { a: 'b' }, extra: true }).success).toBe(false);
  });
});

describe('drop_fields', () => {
  const e = event({
    op: 'u',
    key: { id: 1 },
    before: { id: 1, secret: 's', name: 'a' },
    after: { id: 1, secret: 't', name: 'b' },
    columns: [col('id', 'int32'), col('secret'), col('name')],
  });

  it('removes fields from before, after and columns', () => {
    const out = run(drop({ fields: ['secret'] }), e);
    expect(out?.before).toEqual({ id: 1, name: 'a' });
    expect(out?.after).toEqual({ id: 1, name: 'b' });
    expect(out?.key).toBe(e.key);
    expect(out?.columns?.map((c) => c.name)).toEqual(['id', 'name']);
  });

  it('keeps a dropped key column in the key only', () => {
    const out = run(drop({ fields: ['id', 'secret'] }), e);
    expect(out?.after).toEqual({ name: 'b' });
    expect(out?.key).toEqual({ id: 1 });
    expect(out?.columns?.map((c) => c.name)).toEqual(['id', 'name']);
  });

  it('returns the same event when nothing is dropped', () => {
    expect(run(drop({ fields: ['absent'] }), e)).toBe(e);
  });

  it('rejects bad configs', () => {
    const schema = dropFieldsTransform.configSchema;
    expect(schema.safeParse({ fields: [] }).success).toBe(false);
    expect(schema.safeParse({ fields: 'secret' }).success).toBe(false);
    expect(schema.safeParse({}).success).toBe(false);
  });
});

describe('flatten', () => {
  const columns = [col('id', 'int32'), col('name')];
  const upd = event({ op: 'u', before: { id: 1, name: 'a' }, after: { id: 1, name: 'b' }, columns });
  const del = event({ op: 'd', before: { id: 1, name: 'b' }, columns });
  const trunc = event({ op: 't', key: null });

  it('defaults: keeps deletes and truncates, leaves rows alone', () => {
    const t = flatten({});
    expect(run(t, upd)).toBe(upd);
    expect(run(t, del)).toBe(del);
    expect(run(t, trunc)).toBe(trunc);
    expect(flattenTransform.configSchema.parse({})).toEqual({ delete_handling: 'delete', drop_truncates: false, add_fields: [] });
  });

  it('drops deletes and truncates when asked', () => {
    const t = flatten({ delete_handling: 'drop', drop_truncates: true });
    expect(run(t, del)).toBeNull();
    expect(run(t, trunc)).toBeNull();
    expect(run(t, upd)).toBe(upd);
  });

  it('rewrites a delete into a soft-delete update', () => {
    const t = flatten({ delete_handling: 'rewrite' });
    const out = run(t, del);
    expect(out?.op).toBe('u');
    expect(out?.after).toEqual({ id: 1, name: 'b', __deleted: true });
    expect(out?.before).toBe(del.before);
    expect(out?.columns?.map((c) => [c.name, c.type])).toEqual([
      ['id', 'int32'],
      ['name', 'string'],
      ['__deleted', 'boolean'],
    ]);
    expect(run(t, upd)?.after).toEqual({ id: 1, name: 'b', __deleted: false });
    expect(run(t, event({ op: 'r', after: { id: 2 } }))?.after).toEqual({ id: 2, __deleted: false });
  });

  it('uses the key when a rewritten delete has no before image', () => {
    const out = run(flatten({ delete_handling: 'rewrite' }), event({ op: 'd', key: { id: 7 } }));
    expect(out?.after).toEqual({ id: 7, __deleted: true });
    expect(() => flatten({ delete_handling: 'rewrite' })(event({ op: 'd', key: null }))).toThrow(/neither/);
  });

  it('adds metadata fields with Debezium names', () => {
    const t = flatten({ add_fields: ['op', 'table', 'lsn', 'source.ts_ms', 'ts_ms', 'db', 'schema'] });
    expect(run(t, upd)?.after).toEqual({
      id: 1,
      name: 'b',
      __op: 'u',
      __table: 'users',
      __lsn: 123456,
      __source_ts_ms: 1_700_000_000_000,
      __ts_ms: 1_700_000_000_500,
      __db: 'app',
      __schema: 'public',
    });
    const noLsn = event({ op: 'c', after: { id: 1 }, source: { ...upd.source, raw: {} } });
    expect(run(flatten({ add_fields: ['lsn'] }), noLsn)?.after).toEqual({ id: 1, __lsn: null });
  });

  it('keeps the original op in __op of a rewritten delete', () => {
    const out = run(flatten({ delete_handling: 'rewrite', add_fields: ['op'] }), del);
    expect(out?.after).toEqual({ id: 1, name: 'b', __op: 'd', __deleted: true });
  });

  it('rejects bad configs', () => {
    const schema = flattenTransform.configSchema;
    expect(schema.safeParse({ delete_handling: 'none' }).success).toBe(false);
    expect(schema.safeParse({ add_fields: ['source.lsn'] }).success).toBe(false);
    expect(schema.safeParse({ drop_truncates: 'yes' }).success).toBe(false);
    expect(schema.safeParse({ drop_tombstones: true }).success).toBe(false);
  });
});

describe('registry', () => {
  it('keys each factory by its kind', () => {
    for (const [kind, factory] of Object.entries(builtinTransformKinds)) expect(factory.kind).toBe(kind);
  });

  it('parses a config entry by kind and builds it', () => {
    const config = transformConfigSchema.parse({ kind: 'drop_fields', fields: ['secret'] });
    const out = createTransform(config)(event({ op: 'c', after: { id: 1, secret: 's' } }));
    expect(out?.after).toEqual({ id: 1 });
    expect(transformConfigSchema.parse({ kind: 'flatten' })).toEqual({
      kind: 'flatten',
      delete_handling: 'delete',
      drop_truncates: false,
      add_fields: [],
    });
  });

  it('rejects unknown kinds and unknown fields', () => {
    expect(transformConfigSchema.safeParse({ kind: 'nope' }).success).toBe(false);
    expect(transformConfigSchema.safeParse({ kind: 'filter', ops: ['c'], typo: 1 }).success).toBe(false);
    expect(transformConfigSchema.safeParse({ kind: 'rename_fields', fields: { a: 'x', b: 'x' } }).success).toBe(false);
  });

  it('describes every config field for generated docs', () => {
    for (const factory of Object.values(builtinTransformKinds)) {
      for (const [name, field] of Object.entries(factory.configSchema.shape)) {
        expect(field.description, `${factory.kind}.${name}`).toBeTruthy();
      }
    }
  });
});
