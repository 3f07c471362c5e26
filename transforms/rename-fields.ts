import { z } from 'zod';
import type { ColumnSchema, Row } from '../src/model/change-event.ts';
import { defineBuiltinTransform, type Transform } from '../src/transform/transform.ts';

const configSchema = z
  .object({
    fields: z
      .record(z.string().min(1), z.string().min(1))
      .superRefine((fields, ctx) => {
        const entries = Object.entries(fields);
        if (entries.length === 0) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'at least one field to rename' });
        const sourceOf = new Map<string, string>();
        for (const [from, to] of entries) {
          const other = sourceOf.get(to);
          if (other !== undefined) {
            ctx.addIssue({ code: z.ZodIssueCode.custom, path: [from], message: `${other} and ${from} both rename to ${to}` });
          } else sourceOf.set(to, from);
        }
      })
      .describe('Old column name to new name. Renames are simultaneous, so {a: b, b: a} swaps two columns.'),
  })
  .strict()
  .describe('Renames columns in before, after and key, so a renamed key column stays consistent.');

/**
 * Renames columns in before, after, key and the column schemas. A rename onto a column the row
 * already has (and that is not renamed away) throws rather than silently losing one of the values.
 */
export const renameFieldsTransform = defineBuiltinTransform({
  kind: 'rename_fields',
  configSchema,
  create(config): Transform {
    const renames = new Map(Object.entries(config.fields).filter(([from, to]) => from !== to));
    const columnsCache = new WeakMap<readonly ColumnSchema[], readonly ColumnSchema[]>();

    function renameRow(row: Readonly<Row> | null): Readonly<Row> | null {
      if (row === null) return null;
      const keys = Object.keys(row);
      if (!keys.some((k) => renames.has(k))) return row;
      const sourceOf = new Map<string, string>();
      const entries: Array<[string, unknown]> = [];
      for (const k of keys) {
        const name = renames.get(k) ?? k;
        const other = sourceOf.get(name);
        if (other !== undefined) {
          const renamed = name === k ? other : k;
          throw new Error(`cannot rename ${renamed} to ${name}: the row already has a column ${name}`);
        }
        sourceOf.set(name, k);
        entries.push([name, row[k]]);
      }
      return Object.fromEntries(entries);
    }

    function renameColumns(columns: readonly ColumnSchema[] | undefined): readonly ColumnSchema[] | undefined {
      if (columns === undefined) return undefined;
      let renamed = columnsCache.get(columns);
      if (renamed === undefined) {
        renamed = columns.some((c) => renames.has(c.name))
          ? columns.map((c) => {
              const name = renames.get(c.name);
              return name === undefined ? c : { ...c, name };
            })
          : columns;
        columnsCache.set(columns, renamed);
      }
      return renamed;
    }

    if (renames.size === 0) return (event) => event;
    return (event) => {
      const before = renameRow(event.before);
      const after = renameRow(event.after);
      const key = renameRow(event.key);
      const columns = renameColumns(event.columns);
      if (before === event.before && after === event.after && key === event.key && columns === event.columns) return event;
      return { ...event, before, after, key, columns };
    };
  },
});
