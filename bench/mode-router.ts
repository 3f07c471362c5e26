/**
 * Modes (c) and (d), and the open-loop latency run: cdc-router itself (startService, as `cdc-router
 * run` starts it), with product defaults except where a benchmark needs otherwise (a fresh group,
 * metrics on a free port, warn-level logs). (c) routes every table to three no-op sinks
 * (bench/noop-handlers.ts), (d) to PostgreSQL, Redis (json mode) and Elasticsearch.
 *
 * Latency: append-to-commit per record, by the router's own commit-latency tracker (the one behind
 * its end-to-end latency metric): `batch.processed` gives each record's Kafka timestamp, and the
 * `batch.committed` that covers it gives the commit time.
 */
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../src/config/load.ts';
import { RouterEvents } from '../src/events.ts';
import { createLogger } from '../src/log.ts';
import { createCommitLatencyTracker } from '../src/metrics/commit-latency.ts';
import { startService, type Service } from '../src/service.ts';
import { SOURCE_SCHEMA, TABLES } from './corpus.ts';
import type { LatencyStats, LatencyWindow, ModeRunner, WorkerTask } from './protocol.ts';

type RouterTask = Extract<WorkerTask, { kind: 'router' }>;

const SINK_NAMES = ['pg', 'cache', 'search'] as const;

function routerConfig(task: RouterTask): Record<string, unknown> {
  const { servers, targets } = task;
  const sinks =
    task.sinks === 'noop'
      ? Object.fromEntries(SINK_NAMES.map((n) => [n, { kind: 'noop' }]))
      : {
          pg: { kind: 'postgres', connection: { connection_string: servers.pgUrl }, schema: targets.pgSchema },
          cache: { kind: 'redis', url: servers.redisUrl, key_prefix: targets.redisPrefix, mode: 'json' },
          search: { kind: 'elasticsearch', nodes: servers.esUrl, index_template: `${targets.esPrefix}-{table}` },
        };
  return merged(process.env['BENCH_ROUTER_CONFIG'], {
    kafka: { brokers: [servers.broker], client_id: 'cdc-bench', group_id: task.group, topics: [task.topic] },
    sinks,
    routes: TABLES.map((t) => ({ table: `${SOURCE_SCHEMA}.${t}`, sinks: [...SINK_NAMES] })),
    ...(task.sinks === 'noop' ? { handlers: fileURLToPath(new URL('./noop-handlers.ts', import.meta.url)) } : {}),
    metrics: { port: 0 },
    log: { level: process.env['BENCH_LOG_LEVEL'] ?? 'warn' },
  });
}

type Json = Record<string, unknown>;
const isPlain = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `BENCH_ROUTER_CONFIG` (JSON) laid over the router's config, objects merged key by key: to try settings. */
export function merged(overlay: string | undefined, base: Json): Json {
  if (!overlay) return base;
  const parsed: unknown = JSON.parse(overlay);
  if (!isPlain(parsed)) throw new TypeError('BENCH_ROUTER_CONFIG must be a JSON object');
  const merge = (a: Json, b: Json): Json => {
    const out: Json = { ...a };
    for (const [k, v] of Object.entries(b)) {
      const old = out[k];
      out[k] = isPlain(old) && isPlain(v) ? merge(old, v) : v;
    }
    return out;
  };
  return merge(base, parsed);
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Append-to-commit latencies of records, kept with their append times to pick a window by. */
export function latencyRecorder() {
  let appendMs = new Float64Array(1 << 16);
  let latencyMs = new Float64Array(1 << 16);
  let n = 0;
  const record = (latency: number) => {
    if (n === appendMs.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      appendMs = grow(appendMs);
      latencyMs = grow(latencyMs);
    }
    latencyMs[n] = latency;
    appendMs[n] = Date.now() - latency;
    n++;
  };
  return {
    record,
    /** The router's own commit-latency tracker, recording here. */
    tracker: createCommitLatencyTracker((_topic, fromAppendSeconds) => record(fromAppendSeconds * 1000)),
    stats(window: LatencyWindow | undefined): LatencyStats {
      const picked: number[] = [];
      for (let i = 0; i < n; i++) {
        const at = appendMs[i]!;
        if (!window || (at >= window.fromMs && at < window.toMs)) picked.push(latencyMs[i]!);
      }
      const sorted = Float64Array.from(picked).sort();
      return {
        samples: sorted.length,
        p50Ms: percentile(sorted, 50),
        p90Ms: percentile(sorted, 90),
        p99Ms: percentile(sorted, 99),
        maxMs: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
      };
    },
  };
}

/** BENCH_TRACE=1: once a second, what the pipeline did (batches, their sizes and durations, sink writes, commits). */
function trace(events: RouterEvents): () => void {
  let batches = 0;
  let records = 0;
  let batchMs = 0;
  let commits = 0;
  let commitMs = 0;
  const sinks = new Map<string, { writes: number; records: number; ms: number }>();
  const offs = [
    events.on('batch.processed', (p) => {
      batches++;
      records += p.records;
      batchMs += p.durationMs;
    }),
    events.on('batch.committed', (p) => {
      commits++;
      commitMs += p.durationMs;
    }),
    events.on('sink.written', (p) => {
      const s = sinks.get(p.sink) ?? { writes: 0, records: 0, ms: 0 };
      s.writes++;
      s.records += p.records;
      s.ms += p.durationMs;
      sinks.set(p.sink, s);
    }),
  ];
  const timer = setInterval(() => {
    const per = (a: number, b: number) => (b === 0 ? '-' : (a / b).toFixed(1));
    const sinkText = [...sinks].map(([n, s]) => `${n} ${s.writes}x${per(s.records, s.writes)} ${per(s.ms, s.writes)}ms`).join(', ');
    console.error(
      `[trace] ${records} rec/s, ${batches} batches of ${per(records, batches)} in ${per(batchMs, batches)}ms; ` +
        `${commits} commits ${per(commitMs, commits)}ms; ${sinkText}`,
    );
    batches = records = batchMs = commits = commitMs = 0;
    sinks.clear();
  }, 1_000);
  return () => {
    clearInterval(timer);
    for (const off of offs) off();
  };
}

export function prepareRouter(task: RouterTask): Promise<ModeRunner> {
  return prepareRouterWith(routerConfig(task), task.latency);
}

/** cdc-router on a raw config (as in a config file), measured; `latency`: collect append-to-commit latencies. */
export async function prepareRouterWith(rawConfig: Record<string, unknown>, withLatency: boolean): Promise<ModeRunner> {
  const config = await resolveConfig(rawConfig);
  const logger = createLogger({ level: config.log.level });
  const events = new RouterEvents();
  let processed = 0;
  events.on('batch.processed', (p) => (processed += p.records));
  const latency = withLatency ? latencyRecorder() : undefined;
  if (latency) {
    events.on('batch.processed', (p) => p.timings && latency.tracker.processed(p.topic, p.partition, p.timings));
    events.on('batch.committed', (p) => latency.tracker.committed(p.topic, p.partition, BigInt(p.offset)));
    events.on('group.joined', (p) => latency.tracker.retain(p.assignment));
  }
  const stopTrace = process.env['BENCH_TRACE'] ? trace(events) : undefined;
  let service: Service | undefined;
  return {
    async start() {
      // The open-loop producer starts only once the group owns the partitions.
      const joined = latency ? events.waitFor('group.joined', () => true, 120_000) : undefined;
      service = await startService(config, { logger, events });
      await joined;
    },
    processed: () => processed,
    async stop(window) {
      stopTrace?.();
      await service?.stop();
      logger.flush();
      return latency ? { latency: latency.stats(window) } : {};
    },
  };
}
