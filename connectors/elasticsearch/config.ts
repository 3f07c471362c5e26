import { z } from 'zod';
import { JSON_MODES } from './mapping.ts';
import { templateProblems } from './naming.ts';

const TIME_VALUE = /^\d+(d|h|m|s|ms)$/;

const authSchema = z.union([
  z
    .object({
      username: z.string().min(1),
      password: z.string().min(1).describe('use ${ENV_VAR}: secrets come from the environment'),
    })
    .strict(),
  z
    .object({
      api_key: z.string().min(1).describe('base64 "id:key" API key; use ${ENV_VAR}'),
    })
    .strict(),
]);

const tlsSchema = z
  .object({
    ca_file: z.string().optional().describe('PEM file of the CA that signed the nodes\' certificates'),
    reject_unauthorized: z.boolean().default(true).describe('verify the nodes\' certificates'),
  })
  .strict();

const jsonMode = z.enum(JSON_MODES);

const tableSchema = z
  .object({
    mapping: z
      .record(z.unknown())
      .optional()
      .describe(
        'mapping `properties` of fields the sink neither types from the Debezium schema nor checks against it, e.g. {"price": {"type": "scaled_float", "scaling_factor": 100}}',
      ),
    json_columns: z
      .record(z.string().min(1), jsonMode)
      .optional()
      .describe('per Json (or map) column of the table: flattened, disabled or object, over `json_columns`'),
    settings: z
      .record(z.unknown())
      .optional()
      .describe('index settings for the index the sink creates (e.g. number_of_shards), over `index_settings`'),
  })
  .strict();

export const configSchema = z
  .object({
    nodes: z
      .union([z.string().url(), z.array(z.string().url()).min(1)])
      .transform((v) => (Array.isArray(v) ? v : [v]))
      .describe('node URL or URLs, e.g. ["https://es1:9200"]; credentials belong in `auth`, not in the URL'),
    auth: authSchema.optional().describe('basic auth (username/password) or an API key'),
    tls: tlsSchema.optional().describe('TLS for https:// nodes'),
    index_template: z
      .string()
      .min(1)
      .default('{schema}.{table}')
      .describe(
        'index name per table; {schema} (or the database when there is no schema), {table} and {db} are ' +
          'lowercased and percent-escaped (e.g. "we ird" -> "we%20ird"; a leading -_+. too). Must contain {table}',
      ),
    number_of_replicas: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('replicas of the indices the sink creates (0: a single-node cluster stays green)'),
    index_settings: z
      .record(z.unknown())
      .default({})
      .describe('settings for every index the sink creates (e.g. {"number_of_shards": 1})'),
    json_columns: jsonMode
      .default('flattened')
      .describe(
        'how Json (io.debezium.data.Json) and map columns are mapped: flattened (one field, every leaf a keyword, takes objects), ' +
          'disabled (kept in _source, not indexed, takes any JSON) or object (dynamic mapping inside, one field per key)',
      ),
    tables: z
      .record(z.string().min(1), tableSchema)
      .default({})
      .describe('per table id (<schema>.<table>): mapping, Json columns and settings of the index the sink creates'),
    tombstone_retention: z
      .string()
      .regex(TIME_VALUE, 'expected an Elasticsearch time value such as 7d, 12h, 90m')
      .default('7d')
      .describe(
        'how long a delete is remembered (index.gc_deletes of the indices the sink creates): a replayed ' +
          'older insert within this time cannot resurrect the document. Elasticsearch keeps these tombstones ' +
          'in memory and forgets them when a shard restarts or relocates',
      ),
    truncate: z
      .enum(['apply', 'ignore'])
      .default('apply')
      .describe(
        "apply: delete every document of the index older than the truncate (versioned deletes) and keep its version in the mapping's _meta (cdc_router_truncated) so that older changes stay out; ignore: skip",
      ),
    max_docs_per_request: z
      .number()
      .int()
      .positive()
      .default(2_000)
      .describe('actions per bulk request; a write of more is split into several, sent pipelined'),
    max_bytes_per_request: z
      .number()
      .int()
      .positive()
      .max(100 * 1024 * 1024)
      .default(10 * 1024 * 1024)
      .describe('bytes per bulk request body (Elasticsearch refuses over http.max_content_length, 100 MB)'),
    max_concurrent_requests: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(2)
      .describe('bulk requests of one write in flight at once (the next one is serialized meanwhile)'),
    refresh: z
      .enum(['false', 'true', 'wait_for'])
      .default('false')
      .describe('bulk `refresh`: make writes searchable before acknowledging (costly); reads by id never need it'),
    request_timeout_ms: z.number().int().positive().default(30_000),
    max_retries: z
      .number()
      .int()
      .min(0)
      .default(3)
      .describe('client retries on connection errors and 502/503/504 before the pipeline\'s own retry'),
    compression: z.boolean().default(false).describe('gzip request bodies'),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const message of templateProblems(c.index_template)) {
      ctx.addIssue({ code: 'custom', path: ['index_template'], message });
    }
    c.nodes.forEach((n, i) => {
      const url = new URL(n);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        ctx.addIssue({ code: 'custom', path: ['nodes', i], message: 'expected an http:// or https:// URL' });
      }
    });
    if (c.tls && !c.nodes.every((n) => n.startsWith('https:'))) {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'tls is set but not every node is an https:// URL' });
    }
  });

export type ElasticsearchSinkConfig = z.infer<typeof configSchema>;
