import { z } from 'zod';

/** A duration: milliseconds, or text such as `500ms`, `5s`, `30m`, `1h`, `1d`. */
export const durationSchema = z.union([
  z.number().int().positive(),
  z
    .string()
    .regex(/^\d+(ms|s|m|h|d)$/, 'expected a duration such as 500ms, 5s, 30m, 1h or 1d')
    .transform((text) => {
      const m = /^(\d+)(ms|s|m|h|d)$/.exec(text)!;
      const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
      return Number(m[1]) * unit;
    }),
]);

const columnName = z.string().min(1);

export const AGGREGATION_FUNCTIONS = [
  'count',
  'sum',
  'min',
  'max',
  'avg',
  'var_pop',
  'var_samp',
  'stddev_pop',
  'stddev_samp',
  'count_distinct',
] as const;
export type AggregationFunction = (typeof AGGREGATION_FUNCTIONS)[number];

const aggregationSchema = z
  .object({
    fn: z.enum(AGGREGATION_FUNCTIONS).describe('count, sum, min, max, avg, var_pop, var_samp, stddev_pop, stddev_samp, count_distinct'),
    column: columnName.optional().describe('the input column (count without a column counts rows)'),
  })
  .strict()
  .superRefine((a, ctx) => {
    if (a.fn !== 'count' && a.column === undefined) ctx.addIssue({ code: 'custom', path: ['column'], message: `${a.fn} needs a column` });
  });

const whereSchema = z
  .object({
    field: columnName,
    equals: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
    not_equals: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
    in: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).min(1).optional(),
  })
  .strict()
  .refine((w) => w.equals !== undefined || w.not_equals !== undefined || w.in !== undefined, {
    message: 'where needs one of equals, not_equals, in',
  });

const triggerSchema = z.union([
  z.object({ count: z.number().int().positive().describe('emit after every N changes of a key') }).strict(),
  z.object({ every: durationSchema.describe('emit at most once per interval of the watermark, when something changed') }).strict(),
]);

const windowSchema = z.union([
  z.object({ tumbling: durationSchema.describe('window size') }).strict(),
  z.object({ hopping: z.object({ size: durationSchema, advance: durationSchema }).strict() }).strict(),
  z.object({ session: z.object({ gap: durationSchema.describe('inactivity gap') }).strict() }).strict(),
  z.object({ sliding: z.object({ difference: durationSchema.describe('largest time difference of two changes in one window') }).strict() }).strict(),
  z.object({ global: z.object({ trigger: triggerSchema }).strict() }).strict(),
]);

const lateSchema = z
  .object({
    sink: z.string().min(1).describe('a sink declared under `sinks`: late changes are written to it as change events carrying the reason'),
    table: z
      .string()
      .regex(/^[^.\s]+\.[^.\s]+$/, 'expected <schema>.<table>')
      .optional()
      .describe('table id of the late changes (default: the results table with `_late` appended)'),
  })
  .strict();

export const viewSchema = z
  .object({
    from: z
      .union([
        z.object({ table: z.string().min(1).describe('table id read as a table: updates and deletes retract') }).strict(),
        z.object({ stream: z.string().min(1).describe('table id read as a stream of occurrences: each change counts once') }).strict(),
      ])
      .describe('the input: { table: <id> } or { stream: <id> }'),
    where: whereSchema.optional().describe('rows counted: a column equals / differs from / is in values (default every row)'),
    group_by: z.array(columnName).default([]).describe('group columns (default none: one result row, keyed by a column `view` holding the view name)'),
    aggregations: z
      .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a result column name'), aggregationSchema)
      .refine((r) => Object.keys(r).length > 0, 'at least one aggregation')
      .describe('result column -> { fn, column }'),
    window: windowSchema
      .optional()
      .describe(
        '{ tumbling: 1h }, { hopping: { size: 30s, advance: 5s } }, { session: { gap: 5m } }, { sliding: { difference: 10s } } or { global: { trigger: { count: 100 } | { every: 1m } } } (default none)',
      ),
    event_time: z
      .string()
      .min(1)
      .optional()
      .describe('column holding the event time, or `commit_time` (source.ts_ms); default: commit_time'),
    out_of_orderness: durationSchema
      .optional()
      .describe('watermark: how far behind the highest event time of a partition a change may come and still be on time (default 0)'),
    idle_timeout: durationSchema
      .default(60_000)
      .describe('a partition read to its end (lag 0) with no change for this long stops holding the watermark back (default 60s)'),
    grace: durationSchema
      .optional()
      .describe(
        'allowed lateness: a window takes changes until the watermark passes its end plus this; later ones go to `late` (default the dead-letter queue; grace default: never closed with emit updates, 0 with emit final)',
      ),
    late: lateSchema
      .optional()
      .describe('where changes later than the watermark minus grace go (default: the dead-letter queue, stage view)'),
    emit: z
      .enum(['updates', 'final'])
      .default('updates')
      .describe('updates: every change of a result is written; final: a window\'s result is written when the watermark passes its end, then again for each correction within grace'),
    to: z
      .object({
        sink: z.string().min(1).describe('a sink declared under `sinks`'),
        table: z
          .string()
          .regex(/^[^.\s]+\.[^.\s]+$/, 'expected <schema>.<table>')
          .describe('table id of the results; the sink names its target from it as for any table'),
      })
      .strict(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.window && v.event_time === undefined && 'table' in v.from) {
      ctx.addIssue({
        code: 'custom',
        path: ['event_time'],
        message: 'a windowed view of a table needs event_time: a column (or commit_time, which a replayed snapshot does not keep)',
      });
    }
    if (!v.window && (v.emit === 'final' || v.grace !== undefined || v.out_of_orderness !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['window'], message: 'emit: final, grace and out_of_orderness need a window' });
    }
    if (v.window && 'hopping' in v.window && v.window.hopping.advance > v.window.hopping.size) {
      ctx.addIssue({ code: 'custom', path: ['window', 'hopping', 'advance'], message: 'must not exceed size' });
    }
    if (v.window && ('session' in v.window || 'sliding' in v.window) && !('stream' in v.from)) {
      ctx.addIssue({ code: 'custom', path: ['window'], message: 'session and sliding windows read a stream: from: { stream: <id> }' });
    }
    if (v.window && 'global' in v.window && (v.emit === 'final' || v.grace !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['window', 'global'], message: 'a global window never closes: its trigger says when it emits (no emit: final, no grace)' });
    }
    if (v.late && !v.window) ctx.addIssue({ code: 'custom', path: ['late'], message: 'late needs a window' });
    for (const name of Object.keys(v.aggregations)) {
      if (v.group_by.includes(name) || ['window_start', 'window_end', 'view'].includes(name)) {
        ctx.addIssue({ code: 'custom', path: ['aggregations', name], message: 'collides with a key column of the result' });
      }
    }
  });

export const stateSchema = z
  .object({
    connection_string: z
      .string()
      .min(1)
      .describe('PostgreSQL holding view state, e.g. postgres://user:${PGPASSWORD}@host:5432/db'),
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]*$/, 'a lowercase identifier')
      .default('cdc_router_state')
      .describe('schema of the state tables (default cdc_router_state)'),
    pool_size: z.number().int().min(1).max(100).default(8).describe('(default 8)'),
  })
  .strict();

export type ViewConfig = z.infer<typeof viewSchema>;
export type StateConfig = z.infer<typeof stateSchema>;
