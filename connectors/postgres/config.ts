import { z } from 'zod';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** '500ms', '30s', '15m', '12h', '7d' -> milliseconds. */
const durationSchema = z
  .string()
  .regex(DURATION, 'expected a duration such as 500ms, 30s, 15m, 12h or 7d')
  .transform((text) => {
    const m = DURATION.exec(text)!;
    return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  });

const PLACEHOLDER = /\{([^}]*)\}/g;
const PLACEHOLDERS = new Set(['schema', 'table', 'db']);

/** A name template: literal text with {schema}, {table} and {db}. */
const templateSchema = z
  .string()
  .min(1)
  .superRefine((template, ctx) => {
    for (const m of template.matchAll(PLACEHOLDER)) {
      if (!PLACEHOLDERS.has(m[1]!)) {
        ctx.addIssue({ code: 'custom', message: `unknown placeholder {${m[1]}} (use {schema}, {table} or {db})` });
      }
    }
  });

const sslSchema = z
  .object({
    ca_file: z.string().min(1).optional().describe('PEM file of the CA that signed the server certificate'),
    cert_file: z.string().min(1).optional().describe('client certificate (PEM) for certificate authentication'),
    key_file: z.string().min(1).optional().describe('client private key (PEM) for certificate authentication'),
    reject_unauthorized: z
      .boolean()
      .default(true)
      .describe('verify the server certificate against the CA (default true; false only for testing)'),
  })
  .strict()
  .superRefine((ssl, ctx) => {
    if (Boolean(ssl.cert_file) !== Boolean(ssl.key_file)) {
      ctx.addIssue({ code: 'custom', path: ['key_file'], message: 'cert_file and key_file go together' });
    }
  });

const connectionSchema = z
  .object({
    connection_string: z
      .string()
      .min(1)
      .optional()
      .describe(
        'postgres://user:password@host:port/database?sslmode=…, with ${ENV_VAR} for the secret parts; ' +
          'excludes host, port, user, password and database. Its sslmode/sslrootcert parameters replace `ssl`',
      ),
    host: z.string().min(1).optional().describe('server host (default: $PGHOST, else localhost)'),
    port: z.number().int().min(1).max(65_535).optional().describe('server port (default: $PGPORT, else 5432)'),
    user: z.string().min(1).optional().describe('role to log in as (default: $PGUSER, else the OS user)'),
    password: z.string().optional().describe('use ${ENV_VAR}: secrets come from the environment'),
    database: z.string().min(1).optional().describe('database (default: $PGDATABASE, else the user name)'),
    ssl: z
      .union([z.boolean(), sslSchema])
      .default(false)
      .describe('TLS: false (default), true (verify with the system CAs) or CA/client-certificate settings'),
    pool_size: z.number().int().min(1).max(100).default(4).describe('connections in the pool (default 4)'),
    statement_timeout_ms: z
      .number()
      .int()
      .min(0)
      .default(60_000)
      .describe('server-side limit per statement, a timeout is retriable (default 60000; 0: none)'),
    connect_timeout_ms: z.number().int().positive().default(10_000).describe('limit to open a connection (default 10000)'),
    application_name: z.string().default('cdc-router').describe('shown in pg_stat_activity (default cdc-router)'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.connection_string === undefined) return;
    for (const field of ['host', 'port', 'user', 'password', 'database'] as const) {
      if (c[field] !== undefined) {
        ctx.addIssue({ code: 'custom', path: [field], message: 'set connection_string or the separate fields, not both' });
      }
    }
  });

const tableOverrideSchema = z
  .object({
    schema: templateSchema.optional().describe('target schema for this table (a template, like the top-level `schema`)'),
    table: templateSchema.optional().describe('target table for this table (a template, like the top-level `table`)'),
    key_columns: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('source columns forming the target key (renamed by `columns`); default: the fields of the event key'),
    columns: z
      .record(z.string().min(1), z.string().min(1))
      .default({})
      .describe('renames, source column -> target column; other columns keep their names'),
  })
  .strict();

export const postgresConfigSchema = z
  .object({
    connection: connectionSchema,
    schema: templateSchema
      .default('{schema}')
      .describe('target schema; placeholders {schema}, {table}, {db} (default {schema}: the source schema, else its db)'),
    table: templateSchema.default('{table}').describe('target table; placeholders {schema}, {table}, {db} (default {table})'),
    tables: z
      .record(z.string().min(1), tableOverrideSchema)
      .default({})
      .describe('per source table id (<schema>.<table>): target name, key columns and column renames'),
    auto_create: z
      .boolean()
      .default(true)
      .describe('create missing target schemas and tables from the event column types (default true)'),
    evolve: z
      .boolean()
      .default(true)
      .describe('add columns that appear in events (ADD COLUMN IF NOT EXISTS); never drops or narrows (default true)'),
    position_column: z
      .string()
      .min(1)
      .max(63)
      .default('__cdc_position')
      .describe('column holding each row\'s source position, text COLLATE "C" (default __cdc_position)'),
    tombstone_table_suffix: z
      .string()
      .min(1)
      .max(40)
      .default('__cdc_tombstones')
      .describe('deletes are remembered in <table><suffix>, beside the target (default __cdc_tombstones)'),
    tombstone_retention: durationSchema
      .default('7d')
      .describe('how long a delete is remembered, so that a replayed older insert cannot bring the row back (default 7d)'),
    tombstone_cleanup_interval: durationSchema
      .default('1h')
      .describe('how often expired tombstones are removed, for the tables this process wrote (default 1h; 0s: never)'),
    truncate: z
      .enum(['apply', 'ignore'])
      .default('apply')
      .describe(
        "a source TRUNCATE: apply (delete the target's rows older than it, in order within the batch, and keep its position in <schema>.__cdc_truncates so that replayed older changes stay out) or ignore (default apply)",
      ),
  })
  .strict();

export type PostgresConfig = z.infer<typeof postgresConfigSchema>;
export type TableOverride = z.infer<typeof tableOverrideSchema>;
