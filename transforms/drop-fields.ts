import { z } from 'zod';
import type { ColumnSchema, Row } from '../src/model/change-event.ts';
import { defineBuiltinTransform, type Transform } from '../src/transform/transform.ts';

const configSchema = z
  .object({
    fields: z.array(z.string().min(1)).min(1).describe('Columns to remove from before and after. Key columns stay in the key.'),
  })
  .strict()
  .describe('Removes columns from the row images.');

/**
 * Removes columns from before, after and the column schemas. The key is never touched: sinks need
 * it to address the row, and key columns are not known at config time. So a dropped key column
 * survives in `key` (and its column schema is kept) but leaves the row images.
 */
export const dropFieldsTransform = defineBuiltinTransform({
  kind: 'drop_fields',
  configSchema,
  create(config): Transform {
    const dropped = new Set(config.fields);
    const columnsCache = new WeakMap<readonly ColumnSchema[], readonly ColumnSchema[]>();

    function dropFromRow(row: Readonly<Row> | null): Readonly<Row> | null {
      if (row === null) return null;
      const keys = Object.keys(row);
      if (!keys.some((k) => dropped.has(k))) return row;
      return Object.fromEntries(keys.filter((k) => !dropped.has(k)).map((k) => [k, row[k]]));
    }

    function dropFromColumns(columns: readonly ColumnSchema[], key: Readonly<Row> | null): readonly ColumnSchema[] {
      const keptInKey = key === null ? [] : [...dropped].filter((f) => Object.hasOwn(key, f));
      // Cached for the usual case; key columns are the same for every event of a table anyway.
      const cacheable = keptInKey.length === 0;
      const cached = cacheable ? columnsCache.get(columns) : undefined;
      if (cached !== undefined) return cached;
      const result = columns.some((c) => dropped.has(c.name) && !keptInKey.includes(c.name))
        ? columns.filter((c) => !dropped.has(c.name) || keptInKey.includes(c.name))
        : columns;
      if (cacheable) columnsCache.set(columns, result);
      return result;
    }

    return (event) => {
      const before = dropFromRow(event.before);
      const after = dropFromRow(event.after);
      const columns = event.columns && dropFromColumns(event.columns, event.key);
      if (before === event.before && after === event.after && columns === event.columns) return event;
      return { ...event, before, after, columns };
    };
  },
});
