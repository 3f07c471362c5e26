import { z } from 'zod';
import { OPS, isUnavailable, type ChangeEvent, type Op, type Row } from '../src/model/change-event.ts';
import { defineBuiltinTransform, type Transform } from '../src/transform/transform.ts';

type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

const jsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string(), z.number().finite(), z.boolean(), z.null(), z.array(jsonValueSchema), z.record(jsonValueSchema)]),
);

const opSchema = z.enum(['c', 'u', 'd', 'r', 't'] as const satisfies readonly Op[]);

const whereSchema = z
  .object({
    field: z.string().min(1).describe('Top-level column name.'),
    equals: jsonValueSchema.optional().describe('Keep when the column equals this value (null matches NULL).'),
    not_equals: jsonValueSchema.optional().describe('Keep when the column differs from this value (NULL differs from any non-null value).'),
    in: z.array(jsonValueSchema).min(1).optional().describe('Keep when the column equals one of these values.'),
    exists: z.boolean().optional().describe('true: keep when the column is present and not NULL; false: keep when it is absent or NULL.'),
  })
  .strict()
  .refine((w) => w.equals !== undefined || w.not_equals !== undefined || w.in !== undefined || w.exists !== undefined, {
    message: 'where needs at least one of equals, not_equals, in, exists',
  })
  .describe('Row predicate; all conditions given must hold.');

type Where = z.infer<typeof whereSchema>;

const configSchema = z
  .object({
    ops: z.array(opSchema).min(1).optional().describe('Keep only events with these ops. Default: every op.'),
    exclude_ops: z.array(opSchema).optional().describe('Drop events with these ops. Default: none.'),
    where: whereSchema
      .optional()
      .describe(
        'Keep only events whose row matches: `after`, or `before` for deletes (the key when a delete has no before image). ' +
          'Truncates have no row and pass. Default: no row predicate.',
      ),
  })
  .strict()
  .describe('Drops events by op and by a predicate on one column.');

/**
 * Keeps or drops events. Caveats of `where`, both inherent to filtering a change stream:
 * - an update that moves a row out of the predicate is dropped, so a sink keeps the row's last
 *   matching state;
 * - with PostgreSQL REPLICA IDENTITY DEFAULT a delete's before image holds only the key columns, so a
 *   predicate on any other column drops deletes. Filter on key columns or use REPLICA IDENTITY FULL.
 */
export const filterTransform = defineBuiltinTransform({
  kind: 'filter',
  configSchema,
  create(config): Transform {
    const allowed = new Set<Op>(
      OPS.filter((op) => (config.ops?.includes(op) ?? true) && !(config.exclude_ops?.includes(op) ?? false)),
    );
    const where = config.where ? compileWhere(config.where) : undefined;
    return (event) => {
      if (!allowed.has(event.op)) return null;
      if (where && event.op !== 't' && !where(event)) return null;
      return event;
    };
  },
});

/** For TypeScript table handlers: keeps the events the predicate accepts. */
export function filterBy(predicate: (e: ChangeEvent) => boolean): Transform {
  return (event) => (predicate(event) ? event : null);
}

function compileWhere(where: Where): (event: ChangeEvent) => boolean {
  const { field } = where;
  const valueTests: Array<(value: unknown) => boolean> = [];
  if (where.equals !== undefined) valueTests.push(matcher([where.equals]));
  if (where.not_equals !== undefined) {
    const eq = matcher([where.not_equals]);
    valueTests.push((v) => !eq(v));
  }
  if (where.in !== undefined) valueTests.push(matcher(where.in));
  const exists = where.exists;

  return (event) => {
    const value = columnValue(event, field);
    // An unavailable (unchanged TOASTed) value is known to be non-null, but not what it is.
    if (exists !== undefined && (value !== undefined && value !== null) !== exists) return false;
    if (valueTests.length === 0) return true;
    if (isUnavailable(value)) {
      throw new Error(`filter: column ${field} is unavailable (unchanged TOASTed value), cannot compare it`);
    }
    return valueTests.every((test) => test(value));
  };
}

function columnValue(event: ChangeEvent, field: string): unknown {
  const row = event.op === 'd' ? (event.before ?? event.key) : event.after;
  const value = own(row, field);
  // An update that left a TOASTed column unchanged: the before image (REPLICA IDENTITY FULL) may know it.
  if (isUnavailable(value) && event.op === 'u') {
    const previous = own(event.before, field);
    if (previous !== undefined && !isUnavailable(previous)) return previous;
  }
  return value;
}

/** Own properties only: a column named `constructor` must not read Object.prototype. */
function own(row: Readonly<Row> | null, field: string): unknown {
  return row !== null && Object.hasOwn(row, field) ? row[field] : undefined;
}

/** Whether a row value equals one of the given JSON values; scalars go through a Set. */
function matcher(values: readonly JsonValue[]): (actual: unknown) => boolean {
  const scalars = new Set<unknown>();
  const structured: JsonValue[] = [];
  for (const v of values) {
    if (v !== null && typeof v === 'object') structured.push(v);
    else scalars.add(v);
  }
  return (actual) => {
    const a = normalize(actual);
    if (scalars.has(a)) return true;
    return structured.length > 0 && structured.some((s) => jsonEquals(s, a));
  };
}

/** Absent compares as NULL; an int64 decoded as bigint compares equal to the same JSON number. */
function normalize(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'bigint') {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  return value;
}

function jsonEquals(expected: JsonValue, actual: unknown): boolean {
  const a = normalize(actual);
  if (expected === null || typeof expected !== 'object') return expected === a;
  if (a === null || typeof a !== 'object') return false;
  if (isJsonArray(expected)) {
    return Array.isArray(a) && a.length === expected.length && expected.every((e, i) => jsonEquals(e, a[i]));
  }
  if (Array.isArray(a)) return false;
  const obj = a as Record<string, unknown>;
  const keys = Object.keys(expected);
  return (
    keys.length === Object.keys(obj).length &&
    keys.every((k) => {
      const e = expected[k];
      return e !== undefined && Object.hasOwn(obj, k) && jsonEquals(e, obj[k]);
    })
  );
}

// Array.isArray does not narrow readonly arrays out of a union.
function isJsonArray(v: JsonValue): v is readonly JsonValue[] {
  return Array.isArray(v);
}
