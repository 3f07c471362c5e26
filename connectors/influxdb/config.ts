import { z } from 'zod';

/** Line-protocol precisions by their names here; the /write API's `precision` parameter in PRECISION_PARAM. */
export const PRECISIONS = ['ns', 'us', 'ms', 's'] as const;
export type Precision = (typeof PRECISIONS)[number];

const PLACEHOLDER = /\{(schema|table|db)\}/g;
const DURATION = /^(INF|(\d+(ns|u|µ|ms|s|m|h|d|w))+)$/;

const columnList = z.array(z.string().min(1)).min(1);

/** How the rows of a table become points; every option may be set for the sink and overridden per table. */
const layoutShape = {
  measurement: z
    .string()
    .min(1)
    .optional()
    .describe('measurement name; placeholders {schema} (the database when the source has none), {table}, {db} (default {table})'),
  tags: columnList
    .optional()
    .describe('columns written as tags; absent: the key columns (see key_as_tags) and every string or enum column'),
  fields: columnList
    .optional()
    .describe('columns written as fields; absent: every other column (numbers and booleans by type, strings when `tags` is set)'),
  key_as_tags: z
    .boolean()
    .optional()
    .describe('when `tags` is absent, the key columns are tags too, so that two rows never share a point (default true)'),
  timestamp_column: z
    .string()
    .min(1)
    .optional()
    .describe("the point's time: this column (a timestamp, or an integer count of timestamp_unit since the epoch); absent: the change's commit time source.ts_ms, one point per change"),
  timestamp_unit: z
    .enum(PRECISIONS)
    .optional()
    .describe('unit of an integer timestamp_column (default ms)'),
  decimals: z
    .enum(['string', 'float'])
    .optional()
    .describe('decimal columns as exact strings, or as floats (rounded to a double) (default string)'),
};

const tableSchema = z.object(layoutShape).strict();

export const configSchema = z
  .object({
    url: z
      .string()
      .url()
      .default('http://127.0.0.1:8086')
      .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), 'put credentials in username/password, not in the URL')
      .describe('base URL of the InfluxDB 1.x HTTP API'),
    database: z.string().min(1).describe('database to write to; created when missing (create_database)'),
    retention_policy: z
      .string()
      .min(1)
      .optional()
      .describe("retention policy to write to; created when missing with retention_duration (default: the database's default policy)"),
    retention_duration: z
      .string()
      .regex(DURATION, 'expected an InfluxQL duration such as 30d, 12h, INF')
      .default('INF')
      .describe('DURATION of a retention policy the sink creates'),
    create_database: z
      .boolean()
      .default(true)
      .describe('create the database and retention policy when missing (needs admin rights when authentication is on)'),
    username: z.string().min(1).optional().describe('user, when authentication is on'),
    password: z.string().optional().describe('use ${ENV_VAR}: secrets come from the environment'),
    precision: z
      .enum(PRECISIONS)
      .default('ns')
      .describe('precision of the timestamps written; a time with digits below it is refused (see on_precision_loss)'),
    on_precision_loss: z
      .enum(['fail', 'truncate'])
      .default('fail')
      .describe('a time finer than `precision` (e.g. a µs timestamp into ms): fail the record (dead-letter queue) or truncate it toward the past'),
    ...layoutShape,
    tables: z
      .record(z.string().min(1), tableSchema)
      .default({})
      .describe('per source table id (<schema>.<table>): measurement, tags, fields, timestamp and decimals, over the sink-level ones'),
    on_delete: z
      .enum(['ignore', 'delete_point'])
      .default('ignore')
      .describe('a source delete: ignore (the points stay: history), or delete_point (DELETE the point of the deleted row: its tags and timestamp_column time)'),
    truncate: z
      .enum(['ignore', 'drop_series'])
      .default('ignore')
      .describe("a source truncate: ignore, or drop_series (DROP SERIES FROM the table's measurement: every point of it)"),
    max_points_per_request: z.number().int().positive().default(5_000).describe('lines per /write request'),
    request_timeout_ms: z.number().int().positive().default(30_000).describe('a request not answered in time fails, retriable'),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const [path, template] of [
      [['measurement'], c.measurement],
      ...Object.entries(c.tables).map(([t, l]) => [['tables', t, 'measurement'], l.measurement] as const),
    ] as const) {
      const unknown = template === undefined ? null : /\{[^}]*\}/.exec(template.replace(PLACEHOLDER, ''));
      if (unknown) ctx.addIssue({ code: 'custom', path: [...path], message: `unknown placeholder ${unknown[0]} (known: {schema}, {table}, {db})` });
    }
    if (c.password !== undefined && c.username === undefined) {
      ctx.addIssue({ code: 'custom', path: ['username'], message: 'password is set: set username too' });
    }
    if (c.on_delete === 'delete_point' && c.timestamp_column === undefined && !Object.values(c.tables).some((t) => t.timestamp_column)) {
      ctx.addIssue({
        code: 'custom',
        path: ['on_delete'],
        message: 'delete_point needs timestamp_column: a point timed by commit time cannot be found again from the deleted row',
      });
    }
  });

export type InfluxConfig = z.infer<typeof configSchema>;
export type TableLayoutOptions = z.infer<typeof tableSchema>;

/** The layout of one table: the sink's options with the table's own over them, defaults filled in. */
export interface TableLayout {
  readonly measurement: string;
  readonly tags: readonly string[] | undefined;
  readonly fields: readonly string[] | undefined;
  readonly keyAsTags: boolean;
  readonly timestampColumn: string | undefined;
  readonly timestampUnit: Precision;
  readonly decimals: 'string' | 'float';
}

export function layoutFor(config: InfluxConfig, tableId: string): TableLayout {
  const t = config.tables[tableId] ?? {};
  return {
    measurement: t.measurement ?? config.measurement ?? '{table}',
    tags: t.tags ?? config.tags,
    fields: t.fields ?? config.fields,
    keyAsTags: t.key_as_tags ?? config.key_as_tags ?? true,
    timestampColumn: t.timestamp_column ?? config.timestamp_column,
    timestampUnit: t.timestamp_unit ?? config.timestamp_unit ?? 'ms',
    decimals: t.decimals ?? config.decimals ?? 'string',
  };
}
