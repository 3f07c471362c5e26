import { z } from 'zod';
import { stateSchema, viewSchema } from '../view/view-config.ts';

export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

const tlsSchema = z
  .object({
    ca_file: z.string().optional().describe('PEM file of the CA that signed the brokers\' certificates'),
    cert_file: z.string().optional().describe('client certificate (PEM) for mutual TLS'),
    key_file: z.string().optional().describe('client private key (PEM) for mutual TLS'),
    reject_unauthorized: z.boolean().default(true).describe('verify the brokers\' certificates'),
  })
  .strict();

const saslSchema = z
  .object({
    mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
    username: z.string().min(1),
    password: z.string().min(1).describe('use ${ENV_VAR}: secrets come from the environment'),
  })
  .strict();

export const kafkaSchema = z
  .object({
    brokers: z.array(z.string().regex(/^[^:\s]+:\d+$/, 'expected host:port')).min(1).describe('bootstrap brokers'),
    client_id: z.string().default('cdc-router'),
    group_id: z.string().min(1).default('cdc-router'),
    topics: z.array(z.string().min(1)).optional().describe('topics to consume, by name'),
    topic_pattern: z
      .string()
      .optional()
      .describe('topics to consume, by regular expression (Debezium names them <prefix>.<schema>.<table>)'),
    from_beginning: z.boolean().default(true).describe('where a new group starts: earliest (true) or latest'),
    tls: z.union([z.boolean(), tlsSchema]).default(false),
    sasl: saslSchema.optional(),
    session_timeout_ms: z.number().int().positive().default(30_000),
    heartbeat_interval_ms: z.number().int().positive().default(3_000),
    rebalance_timeout_ms: z.number().int().positive().default(60_000),
    partitions_consumed_concurrently: z.number().int().min(1).max(64).default(4),
    max_bytes_per_partition: z.number().int().positive().default(1_048_576),
    fetch_max_wait_ms: z
      .number()
      .int()
      .min(1)
      .max(30_000)
      .default(500)
      .describe('longest the broker holds a fetch open waiting for new records (Kafka\'s fetch.max.wait.ms)'),
    max_buffered_records_per_partition: z
      .number()
      .int()
      .positive()
      .default(10_000)
      .describe('fetched records waiting for a partition\'s sinks before fetching that partition pauses'),
    connection_timeout_ms: z.number().int().positive().default(3_000),
  })
  .strict()
  .superRefine((k, ctx) => {
    if (!k.topics && !k.topic_pattern) {
      ctx.addIssue({ code: 'custom', path: ['topics'], message: 'set topics or topic_pattern' });
    }
    if (k.topics && k.topic_pattern) {
      ctx.addIssue({ code: 'custom', path: ['topic_pattern'], message: 'set topics or topic_pattern, not both' });
    }
    if (k.topic_pattern) {
      try {
        new RegExp(k.topic_pattern);
      } catch (err) {
        ctx.addIssue({ code: 'custom', path: ['topic_pattern'], message: `not a regular expression: ${String(err)}` });
      }
    }
    if (k.heartbeat_interval_ms >= k.session_timeout_ms) {
      ctx.addIssue({
        code: 'custom',
        path: ['heartbeat_interval_ms'],
        message: 'must be lower than session_timeout_ms',
      });
    }
  });

/** A transform entry; its own fields are checked against the transform kind's schema later. */
export const transformEntrySchema = z.object({ kind: z.string().min(1) }).passthrough();

export const routeSchema = z
  .object({
    table: z.string().min(1).describe('table id (<schema>.<table> or <db>.<table>); "*" matches any table'),
    transforms: z.array(transformEntrySchema).default([]),
    sinks: z.array(z.string().min(1)).min(1).describe('names of sinks declared under `sinks`'),
  })
  .strict();

export const retrySchema = z
  .object({
    initial_ms: z.number().int().positive().default(200),
    max_ms: z.number().int().positive().default(30_000),
    factor: z.number().min(1).default(2),
    jitter: z.number().min(0).max(1).default(0.2),
    deadline_ms: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('give up on a retriable failure after this long and dead-letter the record; default: retry forever'),
    circuit_failure_threshold: z.number().int().positive().default(5).describe('consecutive failed writes that open a sink\'s circuit'),
    circuit_open_ms: z.number().int().positive().default(5_000).describe('how long an open circuit refuses writes before a trial'),
  })
  .strict();

/** Kafka backend: entries are records of a topic, status changes are marker records (see src/dlq). */
const dlqKafkaSchema = z
  .object({
    kind: z.literal('kafka'),
    topic: z.string().min(1).optional().describe('dead-letter topic (default <kafka.group_id>.dlq)'),
    partitions: z.number().int().min(1).default(1).describe('partitions when the topic is created (default 1)'),
    replication_factor: z
      .number()
      .int()
      .min(-1)
      .refine((n) => n !== 0, 'must be -1 (broker default) or at least 1')
      .default(-1)
      .describe('replication factor when the topic is created (default -1: the broker\'s default)'),
    topic_config: z
      .record(z.string(), z.string())
      .default({})
      .describe('topic configs when the topic is created, e.g. { retention.ms: "-1" } (default none)'),
    read_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(60_000)
      .describe('how long the dlq commands wait to read the topic to its end (default 60000)'),
  })
  .strict();

/** BullMQ backend: one job per entry in a queue nothing consumes; the status lives in the job data. */
const dlqBullmqSchema = z
  .object({
    kind: z.literal('bullmq'),
    queue: z
      .string()
      .regex(/^[^:]+$/, 'must not contain ":"')
      .optional()
      .describe('queue name (default <kafka.group_id>.dlq)'),
    prefix: z.string().min(1).default('bull').describe('BullMQ key prefix (default bull)'),
    redis: z
      .object({
        url: z.string().min(1).default('redis://127.0.0.1:6379').describe('redis[s]://[user:password@]host:port[/db] (default redis://127.0.0.1:6379)'),
        username: z.string().min(1).optional().describe('ACL user; wins over the url'),
        password: z.string().min(1).optional().describe('use ${ENV_VAR}; wins over the url'),
        tls: z.boolean().default(false).describe('TLS (default false; a rediss:// url turns it on)'),
        connect_timeout_ms: z.number().int().positive().default(10_000).describe('(default 10000)'),
      })
      .strict()
      .default({}),
  })
  .strict();

/** `dlq:` absent is `{ kind: none }` (a failed record halts its partition); a block without `kind` is Kafka. */
export const dlqSchema = z.preprocess(
  (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) && !('kind' in v) ? { ...v, kind: 'kafka' } : v),
  z.discriminatedUnion('kind', [dlqKafkaSchema, dlqBullmqSchema, z.object({ kind: z.literal('none') }).strict()]),
);

/** Prometheus metrics and health endpoints (src/metrics); port 0 takes any free port. */
export const metricsSchema = z
  .object({
    enabled: z.boolean().default(true).describe('serve /metrics, /healthz, /readyz and /status (default true)'),
    host: z.string().min(1).default('127.0.0.1').describe('address to listen on (default 127.0.0.1: loopback only)'),
    port: z.number().int().min(0).max(65_535).default(9464).describe('(default 9464; 0: any free port)'),
    lag_interval_ms: z
      .number()
      .int()
      .min(100)
      .default(5_000)
      .describe('how often end and committed offsets are fetched for the lag gauge (default 5000)'),
  })
  .strict();

/** Confluent-compatible schema registry for Avro records in the Confluent wire format (src/decode/avro.ts). */
export const schemaRegistrySchema = z
  .object({
    url: z
      .string()
      .url()
      .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), 'put credentials in username/password, not in the URL')
      .describe('base URL of the Confluent-compatible API, e.g. http://registry:8081 (Apicurio: http://host:8080/apis/ccompat/v7)'),
    username: z.string().min(1).optional().describe('basic auth user'),
    password: z.string().optional().describe('basic auth password; use ${ENV_VAR}: secrets come from the environment'),
    request_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(10_000)
      .describe('a registry request not answered in time fails, retriable (default 10000)'),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.password !== undefined && r.username === undefined) {
      ctx.addIssue({ code: 'custom', path: ['username'], message: 'password is set: set username too' });
    }
  });

/** Flow control any sink block takes beside its kind's own options (src/sink/rate-limiter.ts, write-combiner.ts). */
export const rateLimitSchema = z
  .object({
    records_per_second: z.number().positive().optional().describe('records written to the sink per second, at most (average)'),
    requests_per_second: z.number().positive().optional().describe('sink writes per second, at most (one combined batch is one write)'),
    burst: z.number().int().positive().optional().describe('records that may go at once after an idle time (default: records_per_second)'),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.records_per_second === undefined && r.requests_per_second === undefined) {
      ctx.addIssue({ code: 'custom', path: [], message: 'set records_per_second, requests_per_second or both' });
    }
    if (r.burst !== undefined && r.records_per_second === undefined) {
      ctx.addIssue({ code: 'custom', path: ['burst'], message: 'burst sizes the records bucket: set records_per_second too' });
    }
  });

export const sinkFlowShape = {
  rate_limit: rateLimitSchema.optional().describe('token buckets shared by every partition writing to this sink'),
  max_in_flight: z.number().int().min(1).max(64).optional().describe('writes to this sink at once (default sink_concurrency)'),
};

export const configSchema = z
  .object({
    kafka: kafkaSchema,
    decode: z
      .object({
        heartbeat_topic_prefix: z.string().default('__debezium-heartbeat'),
        transaction_topic_suffix: z.string().default('.transaction'),
        schema_registry: schemaRegistrySchema
          .optional()
          .describe('decode Avro records (magic byte 0, schema id, Avro body) through this registry; absent: such records fail'),
      })
      .strict()
      .default({}),
    /** Sinks by name; each block is checked against its kind's schema once kinds are known. */
    sinks: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/), z.object({ kind: z.string().min(1), ...sinkFlowShape }).passthrough()),
    routes: z.array(routeSchema).default([]),
    unrouted: z
      .enum(['skip', 'fail'])
      .default('skip')
      .describe('a change of a table no route matches: skip (and count) or treat as a failed record'),
    handlers: z.string().optional().describe('TypeScript/JavaScript module exporting table handlers'),
    max_batch_size: z.number().int().positive().default(5_000).describe('records per sink write'),
    sink_concurrency: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(2)
      .describe("writes per sink at once; batches of other partitions that arrive meanwhile go out together as the sink's next write"),
    retry: retrySchema.default({}),
    dlq: dlqSchema.default({ kind: 'none' }).describe('dead-letter queue for records that can never succeed'),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
        format: z
          .enum(LOG_FORMATS)
          .default('auto')
          .describe('auto: human-readable (pino-pretty) when stderr, where logs go, is a terminal, else JSON lines; json; pretty'),
      })
      .strict()
      .default({}),
    metrics: metricsSchema.default({}),
    state: stateSchema.optional().describe('PostgreSQL holding the state of views (required when `views` is set)'),
    views: z
      .record(z.string().regex(/^[A-Za-z0-9_]+$/, 'letters, digits and _'), viewSchema)
      .default({})
      .describe('computed views by name: aggregations kept right under updates, deletes and truncates'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (Object.keys(c.views).length > 0 && !c.state) {
      ctx.addIssue({ code: 'custom', path: ['state'], message: 'views need a state connection (state.connection_string)' });
    }
    for (const [name, v] of Object.entries(c.views)) {
      if (!(v.to.sink in c.sinks)) ctx.addIssue({ code: 'custom', path: ['views', name, 'to', 'sink'], message: `no sink named "${v.to.sink}"` });
      if (v.late && !(v.late.sink in c.sinks)) ctx.addIssue({ code: 'custom', path: ['views', name, 'late', 'sink'], message: `no sink named "${v.late.sink}"` });
    }
  });

export type RawConfig = z.infer<typeof configSchema>;
export type KafkaConfig = z.infer<typeof kafkaSchema>;
export type RetryConfig = z.infer<typeof retrySchema>;
export type RateLimitConfig = z.infer<typeof rateLimitSchema>;
export type DlqConfig = z.infer<typeof dlqSchema>;
export type MetricsConfig = z.infer<typeof metricsSchema>;
export type SchemaRegistryConfig = z.infer<typeof schemaRegistrySchema>;
