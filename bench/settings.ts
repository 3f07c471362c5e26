/**
 * What `npm run bench` reads from the environment, with its defaults (the full run the issue asks
 * for). A quick run: `BENCH_EVENTS=30000 BENCH_RUNS=1 BENCH_NAIVE_SECONDS=10 BENCH_LATENCY_SECONDS=5`.
 */

export const MODES = ['raw', 'naive', 'noop', 'stores', 'ceiling-postgres', 'ceiling-redis', 'ceiling-elasticsearch'] as const;
export type Mode = (typeof MODES)[number];

export interface BenchSettings {
  readonly events: number;
  readonly seed: number;
  readonly partitions: number;
  readonly runs: number;
  readonly modes: readonly Mode[];
  /** The views table (bench/views-run.ts): with every mode by default, or `views` in BENCH_MODES. */
  readonly views: boolean;
  readonly naiveSeconds: number;
  readonly latencySeconds: number;
  readonly latencyWarmupSeconds: number;
  /** How long appends go on after the measured part while its last records are not yet committed. */
  readonly latencyTailSeconds: number;
  /** Share of the measured maximum (median of the cdc-router runs into the stores) offered in the latency run. */
  readonly latencyLoad: number;
  /** An offered rate (events/s) for the latency run instead of latencyLoad × d's figure; d need not run then. */
  readonly latencyRate: number | undefined;
  /** Also measure the latency floor (bench/mode-floor.ts) at the same rate, after the router's run. */
  readonly latencyFloor: boolean;
  readonly runTimeoutSeconds: number;
  /** A run whose committed offsets stop moving this long short of the end fails (a stuck partition). */
  readonly stallSeconds: number;
  /** Rows per write of the bare ceilings, and concurrent writers (each owns a fixed set of partitions). */
  readonly ceilingBatch: number;
  readonly ceilingLanes: number;
  readonly pollMs: number;
  readonly broker: string;
  readonly pgUrl: string;
  readonly redisUrl: string;
  readonly esUrl: string;
}

function int(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < min) throw new RangeError(`${name}=${raw}: expected an integer >= ${min}`);
  return n;
}

function fraction(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!(n > 0 && n <= 1)) throw new RangeError(`${name}=${raw}: expected a number in (0, 1]`);
  return n;
}

function modes(): readonly Mode[] {
  const raw = process.env['BENCH_MODES'];
  if (!raw) return MODES;
  const wanted = raw.split(',').map((s) => s.trim()).filter(Boolean);
  // `ceiling` selects the three store ceilings; `latency` and `views` alone select none (only the latency run, the views table).
  const out = wanted.flatMap((m) => (m === 'ceiling' ? MODES.filter((x) => x.startsWith('ceiling-')) : m === 'latency' || m === 'views' ? [] : [m]));
  for (const m of out) {
    if (!(MODES as readonly string[]).includes(m)) throw new RangeError(`BENCH_MODES: unknown mode ${m} (known: ${MODES.join(', ')}, ceiling, latency, views)`);
  }
  return MODES.filter((m) => out.includes(m));
}

export function readSettings(): BenchSettings {
  return {
    events: int('BENCH_EVENTS', 1_000_000, 100),
    seed: int('BENCH_SEED', 42, 0),
    partitions: int('BENCH_PARTITIONS', 12),
    runs: int('BENCH_RUNS', 3),
    modes: modes(),
    views: !process.env['BENCH_MODES'] || process.env['BENCH_MODES'].split(',').some((m) => m.trim() === 'views'),
    naiveSeconds: int('BENCH_NAIVE_SECONDS', 60),
    latencySeconds: int('BENCH_LATENCY_SECONDS', 30, 0),
    latencyWarmupSeconds: int('BENCH_LATENCY_WARMUP_SECONDS', 5, 0),
    latencyTailSeconds: int('BENCH_LATENCY_TAIL_SECONDS', 60),
    latencyLoad: fraction('BENCH_LATENCY_LOAD', 0.7),
    latencyRate: process.env['BENCH_LATENCY_RATE'] ? int('BENCH_LATENCY_RATE', 1) : undefined,
    latencyFloor: process.env['BENCH_LATENCY_FLOOR'] !== '0',
    runTimeoutSeconds: int('BENCH_RUN_TIMEOUT_SECONDS', 1_800),
    stallSeconds: int('BENCH_STALL_SECONDS', 60),
    ceilingBatch: int('BENCH_CEILING_BATCH', 5_000),
    ceilingLanes: int('BENCH_CEILING_LANES', 4),
    pollMs: int('BENCH_POLL_MS', 100, 10),
    broker: process.env['KAFKA_BROKER'] ?? `127.0.0.1:${process.env['KAFKA_PORT'] ?? '9092'}`,
    pgUrl: process.env['PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379',
    esUrl: process.env['ES_URL'] ?? `http://127.0.0.1:${process.env['ES_PORT'] ?? '9200'}`,
  };
}
