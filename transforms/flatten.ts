import { z } from 'zod';
import type { ChangeEvent, ColumnSchema, Row } from '../src/model/change-event.ts';
import { defineBuiltinTransform, type Transform } from '../src/transform/transform.ts';

const ADDABLE_FIELDS = ['op', 'table', 'lsn', 'source.ts_ms', 'ts_ms', 'db', 'schema'] as const;
type AddableField = (typeof ADDABLE_FIELDS)[number];

const configSchema = z
  .object({
    delete_handling: z
      .enum(['delete', 'drop', 'rewrite'])
      .default('delete')
      .describe(
        "'delete' (default): keep delete events, sinks delete the row. 'drop': drop deletes. " +
          "'rewrite': soft delete, a delete becomes an update whose after is the before image (the key when " +
          'there is none) plus `__deleted: true`; creates, updates and reads get `__deleted: false`.',
      ),
    drop_truncates: z.boolean().default(false).describe('Drop truncate events. Default: false (sinks see them).'),
    add_fields: z
      .array(z.enum(ADDABLE_FIELDS))
      .default([])
      .describe(
        'Metadata to add to `after`, named as Debezium does: `__` + the field with dots replaced by `_` ' +
          '(op -> __op, source.ts_ms -> __source_ts_ms). `__op` is the original op. Default: none.',
      ),
  })
  .strict()
  .describe("Debezium's ExtractNewRecordState: `after` is the row state to write; handles deletes and truncates.");

interface AddedField {
  readonly name: string;
  readonly read: (event: ChangeEvent) => unknown;
  readonly column: ColumnSchema;
}

const READERS: Record<AddableField, { readonly read: (event: ChangeEvent) => unknown; readonly type: string }> = {
  op: { read: (e) => e.op, type: 'string' },
  table: { read: (e) => e.source.table ?? e.table.table, type: 'string' },
  lsn: { read: (e) => e.source.raw['lsn'], type: 'int64' },
  'source.ts_ms': { read: (e) => e.source.tsMs, type: 'int64' },
  ts_ms: { read: (e) => e.tsMs, type: 'int64' },
  db: { read: (e) => e.source.db ?? e.table.db, type: 'string' },
  schema: { read: (e) => e.source.schema ?? e.table.schema, type: 'string' },
};

const DELETED = '__deleted';

function column(name: string, type: string): ColumnSchema {
  return { name, type, semantic: undefined, optional: true, parameters: undefined, items: undefined };
}

/**
 * Rewrite mode and REPLICA IDENTITY DEFAULT: a PostgreSQL delete's before image has only the key
 * columns (the rest null), so the soft-deleted row loses its other columns. Use REPLICA IDENTITY FULL.
 */
export const flattenTransform = defineBuiltinTransform({
  kind: 'flatten',
  configSchema,
  create(config): Transform {
    const mode = config.delete_handling;
    const rewrite = mode === 'rewrite';
    const added: AddedField[] = [...new Set(config.add_fields)].map((field) => {
      const name = `__${field.replaceAll('.', '_')}`;
      return { name, read: READERS[field].read, column: column(name, READERS[field].type) };
    });
    const extraColumns = [...(rewrite ? [column(DELETED, 'boolean')] : []), ...added.map((f) => f.column)];
    const changesRows = rewrite || added.length > 0;
    const columnsCache = new WeakMap<readonly ColumnSchema[], readonly ColumnSchema[]>();

    function withColumns(columns: readonly ColumnSchema[] | undefined): readonly ColumnSchema[] | undefined {
      if (columns === undefined) return undefined;
      let result = columnsCache.get(columns);
      if (result === undefined) {
        const present = new Set(columns.map((c) => c.name));
        result = [...columns, ...extraColumns.filter((c) => !present.has(c.name))];
        columnsCache.set(columns, result);
      }
      return result;
    }

    function row(image: Readonly<Row>, event: ChangeEvent, deleted: boolean | undefined): Row {
      const out: Row = { ...image };
      for (const f of added) out[f.name] = f.read(event) ?? null;
      if (deleted !== undefined) out[DELETED] = deleted;
      return out;
    }

    return (event) => {
      if (event.op === 't') return config.drop_truncates ? null : event;
      if (event.op === 'd') {
        if (mode === 'drop') return null;
        if (mode === 'delete') return event;
        const image = event.before ?? event.key;
        if (image === null) throw new Error('flatten: cannot rewrite a delete that has neither a before image nor a key');
        return { ...event, op: 'u', after: row(image, event, true), columns: withColumns(event.columns) };
      }
      if (!changesRows || event.after === null) return event;
      return { ...event, after: row(event.after, event, rewrite ? false : undefined), columns: withColumns(event.columns) };
    };
  },
});
