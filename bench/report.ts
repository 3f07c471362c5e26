/**
 * Turns the runs into the figures the issue asks for: events/s per mode (median over its runs), the
 * ratios R1 = d/b, R2 = c/a, R3 = d/min(e), CPU µs per event, append-to-commit latency; each next to
 * its target with pass/fail. Rendered as markdown, and kept whole as JSON.
 */
import { cpus, loadavg, totalmem, release } from 'node:os';
import type { CorpusSummary } from './corpus.ts';
import type { LatencyStats } from './protocol.ts';
import type { BenchSettings, Mode } from './settings.ts';

export interface RunResult {
  readonly mode: Mode;
  readonly round: number;
  /** Undefined when the run has no figure (it failed, or failed the correctness gate). */
  readonly eventsPerSec: number | undefined;
  readonly records: number;
  readonly seconds: number;
  readonly cpuUsPerEvent: number | undefined;
  /** Only for modes that stop on a budget (the naive consumer). */
  readonly budgetReached?: boolean;
  /** Correctness gate (cdc-router into the stores): undefined when not checked. */
  readonly gate?: { readonly ok: boolean; readonly problems: readonly string[]; readonly seconds: number };
  readonly error?: string;
}

export interface LatencyResult {
  readonly offeredPerSec: number;
  /** d's figure and the share of it offered; undefined when the rate was given (BENCH_LATENCY_RATE). */
  readonly basisPerSec: number | undefined;
  readonly load: number | undefined;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly produced: number;
  /** How far the producer fell behind its schedule at worst (latencies count from the schedule). */
  readonly producerBehindMaxMs: number;
  /** From a measured record's due time to the broker acknowledging its append: the part of the latency before the router could see it. */
  readonly appendedAfter?: { readonly p50Ms: number; readonly p99Ms: number };
  readonly stats: LatencyStats | undefined;
  /** When there is no figure: the latencies of the records that were committed. */
  readonly partial?: LatencyStats;
  readonly error?: string;
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly os: string;
  readonly loadAverageStart: readonly number[];
  readonly loadAverageEnd?: readonly number[];
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${process.platform} ${release()} ${process.arch}`,
    loadAverageStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export const MODE_LABELS: Readonly<Record<Mode, { readonly letter: string; readonly what: string }>> = {
  raw: { letter: 'a', what: 'kafkajs eachBatch, no-op handler' },
  naive: { letter: 'b', what: 'naive: eachMessage, one awaited write per store per event, autoCommit' },
  noop: { letter: 'c', what: 'cdc-router, three no-op sinks' },
  stores: { letter: 'd', what: 'cdc-router into PostgreSQL, Redis, Elasticsearch' },
  'ceiling-postgres': { letter: 'e', what: 'bare batched write: PostgreSQL (unnest upsert)' },
  'ceiling-redis': { letter: 'e', what: 'bare batched write: Redis (pipeline)' },
  'ceiling-elasticsearch': { letter: 'e', what: 'bare batched write: Elasticsearch (bulk)' },
};

export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface ModeFigure {
  readonly mode: Mode;
  readonly eventsPerSec: number | undefined;
  readonly cpuUsPerEvent: number | undefined;
  readonly runs: readonly RunResult[];
}

export interface Target {
  readonly name: string;
  readonly value: number | undefined;
  readonly target: string;
  readonly pass: boolean | undefined;
  readonly stretch?: boolean;
}

export interface Report {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly machine: Machine;
  readonly settings: BenchSettings;
  readonly corpus: CorpusSummary & { readonly topic: string; readonly reused: boolean; readonly produceSeconds: number };
  readonly modes: readonly ModeFigure[];
  readonly ratios: {
    readonly R1: number | undefined;
    readonly R2: number | undefined;
    readonly R3: number | undefined;
    /** CPU per event of d over a's plus each ceiling's: what routing costs beyond consuming and the bare batched writes. */
    readonly cpu: number | undefined;
  };
  readonly latency: LatencyResult | undefined;
  /** The latency floor at the same rate (bench/mode-floor.ts): bare kafkajs and drivers, nothing the router guarantees. */
  readonly latencyFloor?: LatencyResult | undefined;
  readonly targets: readonly Target[];
}

export function figures(modes: readonly Mode[], runs: readonly RunResult[]): ModeFigure[] {
  return modes.map((mode) => {
    const mine = runs.filter((r) => r.mode === mode);
    const good = mine.filter((r) => r.eventsPerSec !== undefined);
    return {
      mode,
      eventsPerSec: median(good.map((r) => r.eventsPerSec!)),
      cpuUsPerEvent: median(good.flatMap((r) => (r.cpuUsPerEvent === undefined ? [] : [r.cpuUsPerEvent]))),
      runs: mine,
    };
  });
}

export function ratios(figs: readonly ModeFigure[]): Report['ratios'] {
  const rate = (m: Mode) => figs.find((f) => f.mode === m)?.eventsPerSec;
  const cpu = (m: Mode) => figs.find((f) => f.mode === m)?.cpuUsPerEvent;
  const div = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? undefined : a / b);
  const storeModes = ['ceiling-postgres', 'ceiling-redis', 'ceiling-elasticsearch'] as const;
  const ceilings = storeModes.map(rate);
  const minCeiling = ceilings.some((c) => c === undefined) ? undefined : Math.min(...(ceilings as number[]));
  const bareCpu = [cpu('raw'), ...storeModes.map(cpu)];
  const bareCpuSum = bareCpu.some((c) => c === undefined) ? undefined : (bareCpu as number[]).reduce((a, b) => a + b, 0);
  return {
    R1: div(rate('stores'), rate('naive')),
    R2: div(rate('noop'), rate('raw')),
    R3: div(rate('stores'), minCeiling),
    cpu: div(cpu('stores'), bareCpuSum),
  };
}

/** p99 wanted: 100 ms at 70% of d, and at a given rate 100 ms up to 1,000 events/s, 250 ms up to 3,000; none above. */
function latencyTargetMs(latency: LatencyResult): number | undefined {
  if (latency.load !== undefined) return 100;
  if (latency.offeredPerSec <= 1_000) return 100;
  if (latency.offeredPerSec <= 3_000) return 250;
  return undefined;
}

export function targets(r: Report['ratios'], figs: readonly ModeFigure[], latency: LatencyResult | undefined): Target[] {
  const atLeast = (v: number | undefined, t: number) => (v === undefined ? undefined : v >= t);
  const atMost = (v: number | undefined, t: number) => (v === undefined ? undefined : v <= t);
  const cpu = figs.find((f) => f.mode === 'stores')?.cpuUsPerEvent;
  const p99 = latency?.stats?.p99Ms;
  const latencyTarget = latency === undefined ? 100 : latencyTargetMs(latency);
  return [
    { name: 'R1 = d/b', value: r.R1, target: '>= 20', pass: atLeast(r.R1, 20) },
    { name: 'R1 = d/b (stretch)', value: r.R1, target: '>= 40', pass: atLeast(r.R1, 40), stretch: true },
    { name: 'R2 = c/a', value: r.R2, target: '>= 0.7', pass: atLeast(r.R2, 0.7) },
    { name: 'R3 = d/min(e)', value: r.R3, target: '>= 0.8', pass: atLeast(r.R3, 0.8) },
    { name: 'CPU µs/event, three sinks (d)', value: cpu, target: '<= 25', pass: atMost(cpu, 25) },
    { name: 'CPU d / (a + e PostgreSQL + e Redis + e Elasticsearch)', value: r.cpu, target: '<= 1.3', pass: atMost(r.cpu, 1.3) },
    {
      name: latency?.load === undefined && latency ? `p99 append-to-commit at ${Math.round(latency.offeredPerSec)}/s, ms` : `p99 append-to-commit at ${Math.round((latency?.load ?? 0.7) * 100)}% load, ms`,
      value: p99,
      target: latencyTarget === undefined ? 'none at this rate' : `<= ${latencyTarget}`,
      pass: latencyTarget === undefined ? undefined : atMost(p99, latencyTarget),
    },
  ];
}

const num = (v: number | undefined, digits = 0) =>
  v === undefined || Number.isNaN(v) ? '—' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const verdict = (t: Target) => (t.pass === undefined ? 'no figure' : t.pass ? 'PASS' : t.stretch ? 'not reached' : 'FAIL');

export function markdown(report: Report): string {
  const m = report.machine;
  const c = report.corpus;
  const s = report.settings;
  const lines: string[] = [];
  lines.push(`# cdc-router benchmark, ${report.startedAt}`, '');
  lines.push(
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}; ` +
      `load average at start ${m.loadAverageStart.join(' / ')}${m.loadAverageEnd ? `, at end ${m.loadAverageEnd.join(' / ')}` : ''}.`,
  );
  lines.push(
    `Corpus: \`${c.topic}\` (${c.reused ? 'reused' : `produced in ${num(c.produceSeconds)} s`}): ${num(c.records)} records ` +
      `(c ${num(c.ops.c)}, u ${num(c.ops.u)}, d ${num(c.ops.d)}, tombstones ${num(c.ops.tombstone)}), ${s.partitions} partitions, ` +
      `${Object.keys(c.tables).length} tables, ${num((100 * c.withSchema) / Math.max(1, c.records - c.ops.tombstone))}% with the schema block; ` +
      `value ${num(c.avgValueBytesWithoutSchema)} B without schema, ${num(c.avgValueBytesWithSchema)} B with (mean ${num(c.avgValueBytes)} B); ` +
      `${num(c.liveRows)} live rows at the end.`,
  );
  lines.push(
    `Runs: ${s.runs} per mode, alternating (order rotated each round); naive budget ${s.naiveSeconds} s; ` +
      `ceilings in batches of ${s.ceilingBatch}, ${s.ceilingLanes} lanes. Events/s and CPU are medians over the runs that have a figure.`,
    '',
  );
  lines.push('| | mode | events/s | per run | CPU µs/event |', '| --- | --- | ---: | --- | ---: |');
  for (const f of report.modes) {
    const label = MODE_LABELS[f.mode];
    const per = f.runs.map((r) => (r.eventsPerSec === undefined ? 'no figure' : num(r.eventsPerSec))).join(', ');
    lines.push(`| ${label.letter} | ${label.what} | ${num(f.eventsPerSec)} | ${per} | ${num(f.cpuUsPerEvent, 1)} |`);
  }
  lines.push('');
  const l = report.latency;
  if (l) {
    const share = l.load === undefined ? 'a given rate' : `${Math.round(l.load * 100)}% of d's ${num(l.basisPerSec)}`;
    lines.push(
      l.stats
        ? `Latency (append to commit, open loop): ${num(l.offeredPerSec)} events/s offered (${share}) ` +
            `for ${l.seconds} s, after ${l.warmupSeconds} s of warm-up at that rate: p50 ${num(l.stats.p50Ms)} ms, p90 ${num(l.stats.p90Ms)} ms, ` +
            `p99 ${num(l.stats.p99Ms)} ms, max ${num(l.stats.maxMs)} ms over ${num(l.stats.samples)} records ` +
            `(producer at most ${num(l.producerBehindMaxMs)} ms behind schedule` +
            (l.appendedAfter ? `; appended, acks=all, p50 ${num(l.appendedAfter.p50Ms)} ms, p99 ${num(l.appendedAfter.p99Ms)} ms after due` : '') +
            ').'
        : `Latency: no figure at ${num(l.offeredPerSec)} events/s offered (${share}): ${l.error ?? 'no samples'}.`,
      '',
    );
  } else lines.push('Latency: not measured (no figure for d).', '');
  const f = report.latencyFloor;
  if (f) {
    lines.push(
      f.stats
        ? `Latency floor (bench/mode-floor.ts: bare kafkajs, one combined write to the three stores with the ceilings' writers, then one commit; ` +
            `no guard, no type mapping) at ${num(f.offeredPerSec)} events/s, same warm-up and length: p50 ${num(f.stats.p50Ms)} ms, p90 ${num(f.stats.p90Ms)} ms, ` +
            `p99 ${num(f.stats.p99Ms)} ms, max ${num(f.stats.maxMs)} ms over ${num(f.stats.samples)} records` +
            (f.appendedAfter ? ` (appended p99 ${num(f.appendedAfter.p99Ms)} ms after due)` : '') +
            (l?.stats ? `; the router's p99 is ${(l.stats.p99Ms / f.stats.p99Ms).toFixed(2)}× the floor's.` : '.')
        : `Latency floor: no figure at ${num(f.offeredPerSec)} events/s: ${f.error ?? 'no samples'}.`,
      '',
    );
  }
  lines.push('| target | value | wanted | result |', '| --- | ---: | --- | --- |');
  for (const t of report.targets) lines.push(`| ${t.name} | ${num(t.value, t.name.startsWith('R') || t.name.startsWith('CPU d') ? 2 : 1)} | ${t.target} | ${verdict(t)} |`);
  const failures = report.modes.flatMap((f) => f.runs.filter((r) => r.error || (r.gate && !r.gate.ok)));
  if (failures.length > 0) {
    lines.push('', 'Runs without a figure:');
    for (const r of failures) {
      const why = r.error ?? r.gate?.problems.join('; ') ?? '';
      lines.push(`- ${MODE_LABELS[r.mode].letter} ${r.mode}, round ${r.round + 1}: ${why}`);
    }
  }
  return lines.join('\n') + '\n';
}
