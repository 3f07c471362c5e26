import { z } from 'zod';

/**
 * The JSON a running router serves at /status and `cdc-router status` reads. One schema for both
 * sides, so the command parses (never trusts) what comes over the network. Offsets are numbers
 * (like `offsets show --json`), null where unknown.
 */
export const partitionStatusSchema = z.object({
  topic: z.string(),
  partition: z.number().int(),
  /** The group's committed offset: the newer of this member's last commit and the broker's answer. */
  committed: z.number().nullable(),
  end: z.number().nullable(),
  lag: z.number().nullable(),
  paused: z.boolean(),
  in_flight: z.number(),
});

export const sinkHealthSchema = z.enum(['starting', 'ok', 'retrying', 'down']);

export const sinkStatusSchema = z.object({
  name: z.string(),
  /** starting: not started yet; retrying: its last write failed or its circuit is half-open; down: circuit open. */
  health: sinkHealthSchema,
  circuit: z.enum(['closed', 'half-open', 'open']),
  written: z.number(),
  retries: z.number(),
  /** Time its writes waited for its rate_limit since start (0 without one; absent from older routers). */
  throttled_seconds: z.number().default(0),
  last_write_at: z.string().nullable(),
  last_error: z.string().nullable(),
  last_error_at: z.string().nullable(),
  written_per_second: z.number(),
});

export const statusReportSchema = z.object({
  group: z.string(),
  member_id: z.string().nullable(),
  ready: z.boolean(),
  /** Why /readyz answers 503; empty when ready. */
  not_ready: z.array(z.string()),
  stopping: z.boolean(),
  started_at: z.string(),
  uptime_seconds: z.number(),
  /** When end and committed offsets were last fetched; null before the first fetch. */
  offsets_at: z.string().nullable(),
  partitions: z.array(partitionStatusSchema),
  total_lag: z.number().nullable(),
  paused: z.array(z.object({ topic: z.string(), partition: z.number().int() })),
  sinks: z.array(sinkStatusSchema),
  /** Entries this process stored in the dead-letter queue since it started. */
  dlq: z.object({ entries: z.number(), by_stage: z.record(z.string(), z.number()) }),
  rates: z.object({
    window_seconds: z.number(),
    consumed_per_second: z.number(),
    written_per_second: z.number(),
    filtered_per_second: z.number(),
    skipped_per_second: z.number(),
    dead_lettered_per_second: z.number(),
    failed_per_second: z.number(),
  }),
});

export type PartitionStatus = z.infer<typeof partitionStatusSchema>;
export type SinkStatus = z.infer<typeof sinkStatusSchema>;
export type SinkHealth = z.infer<typeof sinkHealthSchema>;
export type StatusReport = z.infer<typeof statusReportSchema>;
