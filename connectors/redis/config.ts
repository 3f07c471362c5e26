import { z } from 'zod';
import { DEFAULT_KEY_TEMPLATE, templateProblems } from './key-layout.ts';

const tlsSchema = z
  .object({
    ca_file: z.string().min(1).optional().describe('PEM file of the CA that signed the server certificate (default: system CAs)'),
    cert_file: z.string().min(1).optional().describe('client certificate (PEM) for mutual TLS'),
    key_file: z.string().min(1).optional().describe('client private key (PEM) for mutual TLS'),
    servername: z.string().min(1).optional().describe('SNI / certificate host name (default: the host)'),
    reject_unauthorized: z.boolean().default(true).describe('verify the server certificate (default true)'),
  })
  .strict();

export const configSchema = z
  .object({
    url: z
      .string()
      .optional()
      .describe('redis://[user:password@]host[:port][/db], or rediss:// for TLS; instead of host/port/db'),
    host: z.string().min(1).optional().describe('server host (default 127.0.0.1)'),
    port: z.number().int().min(1).max(65_535).optional().describe('server port (default 6379)'),
    db: z.number().int().min(0).optional().describe('database number (default 0)'),
    username: z.string().min(1).optional().describe('ACL user (Redis 6+); wins over the url'),
    password: z.string().min(1).optional().describe('use ${ENV_VAR}: secrets come from the environment; wins over the url'),
    tls: z
      .union([z.boolean(), tlsSchema])
      .default(false)
      .describe('TLS: true, or options (default false; a rediss:// url turns it on)'),
    key_prefix: z.string().default('').describe('prepended to every key the sink writes (default "")'),
    mode: z
      .enum(['hash', 'json'])
      .default('hash')
      .describe('hash: one field per column, values as strings, nulls omitted, objects as JSON; json: the row as one JSON string (default hash)'),
    key_template: z
      .string()
      .default(DEFAULT_KEY_TEMPLATE)
      .describe(
        'key after the prefix; placeholders {table}, {schema}, {db}, {key} (key values joined by ":"; "\\" and ":" inside values escaped with "\\") (default "{table}:{key}")',
      ),
    ttl_seconds: z.number().int().positive().optional().describe('expire rows this long after their last write (default: never)'),
    tombstone_retention_seconds: z
      .number()
      .int()
      .positive()
      .default(7 * 24 * 3600)
      .describe('how long a delete remembers its position, refusing replays of older writes (default 7 days)'),
    truncate: z
      .enum(['apply', 'ignore'])
      .default('apply')
      .describe("apply: a truncate deletes the table's keys older than it (SCAN over the table's key pattern) and keeps its position so that replayed older writes stay out; ignore: skip it (default apply)"),
    rows_per_script: z
      .number()
      .int()
      .min(1)
      .max(2_000)
      .default(200)
      .describe('rows per script call; a batch is several calls in one pipeline, each blocking Redis briefly (default 200)'),
    connect_timeout_ms: z.number().int().positive().default(10_000).describe('(default 10000)'),
    command_timeout_ms: z.number().int().positive().default(30_000).describe('a batch not answered in time fails, retriable (default 30000)'),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const message of templateProblems(c.key_template)) ctx.addIssue({ code: 'custom', path: ['key_template'], message });
    if (c.url === undefined) return;
    if (c.host !== undefined || c.port !== undefined || c.db !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'set url or host/port/db, not both' });
    }
    let url: URL;
    try {
      url = new URL(c.url);
    } catch {
      // The url may hold a password: never echo it.
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'not a valid URL' });
      return;
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'expected redis:// or rediss://' });
    }
    if (!/^\/?\d*$/.test(url.pathname)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'the path must be a database number' });
  });

export type RedisSinkConfig = z.infer<typeof configSchema>;
