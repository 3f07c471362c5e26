/**
 * The views table of `npm run bench` (BENCH_MODES=views runs it alone): on one corpus (the views
 * corpus, bench/views-corpus.ts), raw consume, the router with a no-op sink, a stateless transform
 * chain, and views with PostgreSQL state (windowed, grouped at 1k, 100k and 1M group values), each
 * in a fresh process, consumer group and state schema (dropped afterwards). Each view run is gated:
 * its groups must count exactly the corpus's live rows (six times over for the 30 s / 5 s hopping
 * window) and its outbox must be empty. Then, per variant with a figure, an open-loop run at
 * BENCH_VIEWS_LATENCY_LOAD (20%) of its figure gives p99 from append to result committed.
 */
import type { Admin, Kafka } from 'kafkajs';
import type { CorpusSpec } from './corpus.ts';
import { ensureCorpusTopic } from './corpus-topic.ts';
import { appendStats, committedOffsets, startOpenLoop, type Outgoing } from './latency-run.ts';
import { log, sleep, withCleanup } from './lifecycle.ts';
import { VIEW_NAME } from './mode-views.ts';
import { commitWatch, endOffsets, reachedEnd } from './offsets.ts';
import type { LatencyStats, Servers, ViewsVariant, WorkerTask } from './protocol.ts';
import { median } from './report.ts';
import type { BenchSettings } from './settings.ts';
import { quote, targetsFor, type StoreClients } from './stores.ts';
import { expectViews, viewsMessages, viewsTopic } from './views-corpus.ts';
import { startWorker } from './worker-handle.ts';

export type ViewsRow = 'raw' | ViewsVariant;

export const VIEWS_ROWS: readonly ViewsRow[] = [
  'raw',
  'noop',
  'filter-map',
  'tumbling-5s',
  'hopping-30s-5s',
  'session-5m',
  'group-1k',
  'group-100k',
  'group-1M',
  'group-1k-pg',
];

interface RowInfo {
  readonly what: string;
  readonly output: string;
  /** Which target the row is held to. */
  readonly target: 'basis' | 'stateless' | 'aggregation' | 'none';
  /** Rows counted per live row of the corpus (windows that overlap count a row more than once). */
  readonly rowsPerLiveRow?: number;
  /** A stream view: its groups count every change (tombstones not), not the live rows. */
  readonly countsOccurrences?: true;
}

export const ROW_INFO: Readonly<Record<ViewsRow, RowInfo>> = {
  raw: { what: 'raw consume (kafkajs eachBatch, nothing done)', output: '-', target: 'none' },
  noop: { what: 'router, table routed to a no-op sink', output: 'no-op', target: 'basis' },
  'filter-map': { what: 'filter + map: route through filter, rename_fields, drop_fields', output: 'no-op', target: 'stateless' },
  'tumbling-5s': { what: 'tumbling 5 s (commit time), count/sum/max per 1k groups', output: 'no-op', target: 'aggregation', rowsPerLiveRow: 1 },
  'hopping-30s-5s': { what: 'hopping 30 s / 5 s (commit time), count/sum/max per 1k groups', output: 'no-op', target: 'aggregation', rowsPerLiveRow: 6 },
  'session-5m': {
    what: 'session windows, 5 min gap (commit time), count/sum/max per 1k groups, the table read as a stream',
    output: 'no-op',
    target: 'aggregation',
    countsOccurrences: true,
  },
  'group-1k': { what: 'group-by, count/sum/max, 1k group values', output: 'no-op', target: 'aggregation', rowsPerLiveRow: 1 },
  'group-100k': { what: 'group-by, count/sum/max, 100k group values', output: 'no-op', target: 'aggregation', rowsPerLiveRow: 1 },
  'group-1M': { what: 'group-by, count/sum/max, 1M group values', output: 'no-op', target: 'aggregation', rowsPerLiveRow: 1 },
  'group-1k-pg': { what: 'group-by, count/sum/max, 1k group values', output: 'PostgreSQL', target: 'aggregation', rowsPerLiveRow: 1 },
};

export interface ViewsRun {
  readonly row: ViewsRow;
  readonly round: number;
  readonly eventsPerSec: number | undefined;
  readonly records: number;
  readonly seconds: number;
  readonly cpuUsPerEvent: number | undefined;
  /** Groups (group × window) holding rows at the end. */
  readonly groups?: number;
  readonly gate?: { readonly ok: boolean; readonly problems: readonly string[] };
  readonly error?: string;
}

export interface ViewsLatency {
  readonly row: ViewsRow;
  readonly offeredPerSec: number;
  readonly stats: LatencyStats | undefined;
  readonly appendedAfter?: { readonly p50Ms: number; readonly p99Ms: number };
  readonly producerBehindMaxMs?: number;
  readonly error?: string;
}

export interface ViewsFigure {
  readonly row: ViewsRow;
  readonly eventsPerSec: number | undefined;
  readonly cpuUsPerEvent: number | undefined;
  /** events/s over the router with a no-op sink's. */
  readonly ratio: number | undefined;
  readonly groups: number | undefined;
  readonly latency: ViewsLatency | undefined;
  readonly runs: readonly ViewsRun[];
}

export interface ViewsReport {
  readonly topic: string;
  readonly records: number;
  readonly liveRows: number;
  readonly reused: boolean;
  readonly latencyLoad: number;
  readonly figures: readonly ViewsFigure[];
  readonly targets: readonly { readonly target: string; readonly figure: string; readonly pass: boolean | undefined }[];
}

export interface ViewsContext {
  readonly settings: BenchSettings;
  readonly servers: Servers;
  readonly kafka: Kafka;
  readonly admin: Admin;
  readonly clients: StoreClients;
  readonly runId: string;
}

function rows(): readonly ViewsRow[] {
  const raw = process.env['BENCH_VIEWS_ROWS'];
  if (!raw) return VIEWS_ROWS;
  const wanted = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const r of wanted) if (!(VIEWS_ROWS as readonly string[]).includes(r)) throw new RangeError(`BENCH_VIEWS_ROWS: unknown row ${r} (known: ${VIEWS_ROWS.join(', ')})`);
  return VIEWS_ROWS.filter((r) => wanted.includes(r));
}

function latencyLoad(): number {
  const raw = process.env['BENCH_VIEWS_LATENCY_LOAD'];
  const n = raw ? Number(raw) : 0.2;
  if (!(n > 0 && n <= 1)) throw new RangeError(`BENCH_VIEWS_LATENCY_LOAD=${raw}: expected a number in (0, 1]`);
  return n;
}

const dropSchema = (clients: StoreClients, schema: string) => clients.pg.query(`DROP SCHEMA IF EXISTS ${quote(schema)} CASCADE`);

function taskFor(ctx: ViewsContext, row: ViewsRow, topic: string, group: string, stateSchema: string, latency: boolean): WorkerTask {
  if (row === 'raw') return { kind: 'raw', servers: ctx.servers, topic, group };
  return { kind: 'views', variant: row, servers: ctx.servers, topic, group, stateSchema, latency };
}

/** The view's groups against the corpus: every live row counted (once per window it falls in), nothing left in the outbox. */
/** What a row's groups must count together: the corpus's live rows (per window), or its changes for a stream view; undefined: not a view. */
function expectedCount(row: ViewsRow, corpus: Corpus): number | undefined {
  const info = ROW_INFO[row];
  if (info.countsOccurrences) return corpus.occurrences;
  return info.rowsPerLiveRow === undefined ? undefined : corpus.liveRows * info.rowsPerLiveRow;
}

type Corpus = { readonly liveRows: number; readonly occurrences: number };

async function gate(clients: StoreClients, row: ViewsRow, schema: string, expected: number): Promise<{ groups: number; problems: string[] }> {
  const s = quote(schema);
  const g = await clients.pg.query<{ groups: string; rows: string }>(
    `SELECT count(*) FILTER (WHERE rows > 0)::text AS groups, coalesce(sum(rows), 0)::text AS rows FROM ${s}.view_groups WHERE view = $1`,
    [VIEW_NAME],
  );
  const outbox = await clients.pg.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${s}.view_outbox WHERE view = $1`, [VIEW_NAME]);
  const groups = Number(g.rows[0]?.groups ?? 0);
  const counted = Number(g.rows[0]?.rows ?? 0);
  const problems: string[] = [];
  if (counted !== expected) {
    problems.push(`groups count ${counted} rows, the corpus has ${expected} (${ROW_INFO[row].countsOccurrences ? 'changes' : 'live rows × windows per row'})`);
  }
  if (Number(outbox.rows[0]?.n ?? 0) !== 0) problems.push(`${outbox.rows[0]?.n} results still in the outbox`);
  if (ROW_INFO[row].output === 'PostgreSQL') {
    const r = await clients.pg.query<{ n: string; orders: string | null }>(`SELECT count(*)::text AS n, sum(orders)::text AS orders FROM ${s}.results`);
    if (Number(r.rows[0]?.n) !== groups || Number(r.rows[0]?.orders ?? 0) !== expected) {
      problems.push(`the PostgreSQL results hold ${r.rows[0]?.n} groups counting ${r.rows[0]?.orders} rows, the state ${groups} groups counting ${counted}`);
    }
  }
  return { groups, problems };
}

async function measure(ctx: ViewsContext, row: ViewsRow, round: number, topic: string, end: ReadonlyMap<number, string>, corpus: Corpus): Promise<ViewsRun> {
  const label = `v${round + 1}_${row}`;
  const group = `cdc-bench-${ctx.runId}-${label}`;
  const schema = targetsFor(ctx.runId, label).pgSchema;
  const fail = (error: string): ViewsRun => ({ row, round, eventsPerSec: undefined, records: 0, seconds: 0, cpuUsPerEvent: undefined, error });
  const cleanup = async () => {
    if (!process.env['BENCH_KEEP']) await dropSchema(ctx.clients, schema);
    await ctx.admin.deleteGroups([group]).catch(() => undefined);
  };
  return withCleanup(cleanup, async () => {
    const worker = startWorker(taskFor(ctx, row, topic, group, schema, false));
    try {
      await worker.next('ready', 120_000);
      worker.send({ type: 'start' });
      const started = await worker.next('started', 60_000);
      const stopped = worker.next('stopped', ctx.settings.runTimeoutSeconds * 1000 + 120_000);
      stopped.catch(() => undefined);
      const broken = stopped.then(
        () => undefined,
        () => undefined,
      );
      const poll = commitWatch(ctx.admin, group, topic, end, ctx.settings.stallSeconds * 1000);
      let doneAt: number | undefined;
      let stalled: string | undefined;
      while (Date.now() - started.at < ctx.settings.runTimeoutSeconds * 1000 && worker.child.connected) {
        const state = await poll();
        if (state.done) {
          doneAt = Date.now();
          break;
        }
        if ((stalled = state.stalled)) break;
        await Promise.race([sleep(ctx.settings.pollMs), broken]);
      }
      worker.send({ type: 'stop' });
      const last = await stopped;
      await worker.exit(120_000);
      if (doneAt === undefined) return fail(stalled ?? `committed offsets did not reach the end offsets within ${ctx.settings.runTimeoutSeconds} s`);
      const seconds = (doneAt - started.at) / 1000;
      const records = [...end.values()].reduce((n, o) => n + Number(o), 0);
      const measured: ViewsRun = { row, round, eventsPerSec: records / seconds, records, seconds, cpuUsPerEvent: last.cpuUs / records };
      const expected = expectedCount(row, corpus);
      if (expected === undefined) return measured;
      const checked = await gate(ctx.clients, row, schema, expected);
      if (!(await reachedEnd(ctx.admin, group, topic, end))) checked.problems.push('committed offsets are not the end offsets');
      const ok = checked.problems.length === 0;
      return {
        ...measured,
        groups: checked.groups,
        gate: { ok, problems: checked.problems },
        ...(ok ? {} : { eventsPerSec: undefined, cpuUsPerEvent: undefined }),
      };
    } catch (err) {
      worker.child.kill('SIGKILL');
      await worker.exit(10_000);
      const message = err instanceof Error ? err.message : String(err);
      log(`  ${message}`);
      return fail(message.split('\n')[0]!);
    }
  });
}

/** Open loop at `rate` on a fresh topic of the views corpus's records (another seed): p99 of append to result committed. */
async function latencyAt(ctx: ViewsContext, row: ViewsVariant, rate: number): Promise<ViewsLatency> {
  const s = ctx.settings;
  const topic = `cdc-bench.views-latency.${ctx.runId}.${row}`;
  const group = `cdc-bench-${ctx.runId}-vlat-${row}`;
  const schema = targetsFor(ctx.runId, `vlat_${row}`).pgSchema;
  const counted = Math.max(1, Math.round(rate * (s.latencyWarmupSeconds + s.latencySeconds)));
  const next = viewsMessages(s.seed + 1, s.partitions);
  const toOutgoing = (): Outgoing => {
    const m = next();
    return { partition: m.partition, key: Buffer.from(m.key), value: m.value === null ? null : Buffer.from(m.value) };
  };
  const prepared = Array.from({ length: counted }, toOutgoing);
  const message = (i: number) => prepared[i] ?? toOutgoing();
  const producer = ctx.kafka.producer({ allowAutoTopicCreation: false });
  const cleanup = async () => {
    await producer.disconnect().catch(() => undefined);
    if (!process.env['BENCH_KEEP']) await dropSchema(ctx.clients, schema);
    await ctx.admin.deleteGroups([group]).catch(() => undefined);
    await ctx.admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  };
  return withCleanup(cleanup, async () => {
    await ctx.admin.createTopics({ topics: [{ topic, numPartitions: s.partitions }], waitForLeaders: true });
    await producer.connect();
    const worker = startWorker(taskFor(ctx, row, topic, group, schema, true));
    try {
      await worker.next('ready', 120_000);
      worker.send({ type: 'start' });
      await worker.next('running', 120_000);
      const stream = startOpenLoop(producer, topic, rate, counted, message);
      const required = await stream.countedAppended;
      const deadline = Date.now() + s.latencyTailSeconds * 1000;
      let covered = false;
      while (Date.now() < deadline && worker.child.connected) {
        const committed = await committedOffsets(ctx.admin, group, topic);
        if ([...required].every(([p, o]) => (committed.get(p) ?? -1) >= o)) {
          covered = true;
          break;
        }
        await sleep(s.pollMs);
      }
      await stream.stop();
      const window = { fromMs: stream.startMs + s.latencyWarmupSeconds * 1000, toMs: stream.startMs + (s.latencyWarmupSeconds + s.latencySeconds) * 1000 };
      worker.send({ type: 'stop', window });
      const stopped = await worker.next('stopped', 120_000);
      await worker.exit(60_000);
      const extra = {
        appendedAfter: appendStats(stream.appendedAfterMs.subarray(Math.round(rate * s.latencyWarmupSeconds))),
        producerBehindMaxMs: stream.behindMaxMs(),
      };
      if (stream.failed() > 0) return { row, offeredPerSec: rate, stats: undefined, ...extra, error: `${stream.failed()} appends failed: ${stream.firstError()}` };
      if (!covered) return { row, offeredPerSec: rate, stats: undefined, ...extra, error: `measured records not committed ${s.latencyTailSeconds} s after the measured part (the router's log above says why, e.g. a partition halted at a record)` };
      return { row, offeredPerSec: rate, stats: stopped.latency, ...extra };
    } catch (err) {
      worker.child.kill('SIGKILL');
      await worker.exit(10_000);
      return { row, offeredPerSec: rate, stats: undefined, error: err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err) };
    }
  });
}

const rotate = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]!);

export async function viewsBench(ctx: ViewsContext): Promise<ViewsReport> {
  const s = ctx.settings;
  const spec: CorpusSpec = { seed: s.seed, events: s.events, partitions: s.partitions };
  const expected = expectViews(spec);
  const corpus = await ensureCorpusTopic(ctx.kafka, ctx.admin, spec, log, { topic: viewsTopic(spec), messages: () => viewsMessages(spec.seed, spec.partitions) });
  log(`views corpus ${corpus.topic}: ${corpus.reused ? 'reused' : `produced in ${Math.round(corpus.produceSeconds)} s`}, ${expected.liveRows} live rows at the end`);
  const end = await endOffsets(ctx.admin, corpus.topic);
  const selected = rows();
  const runs: ViewsRun[] = [];
  for (let round = 0; round < s.runs; round++) {
    for (const row of rotate(selected, round)) {
      log(`views round ${round + 1}/${s.runs}: ${row} …`);
      const r = await measure(ctx, row, round, corpus.topic, end, expected);
      runs.push(r);
      const figure = r.eventsPerSec === undefined ? 'no figure' : `${Math.round(r.eventsPerSec)} events/s`;
      const cpu = r.cpuUsPerEvent === undefined ? '' : `, ${r.cpuUsPerEvent.toFixed(1)} µs CPU/event`;
      const groups = r.groups === undefined ? '' : `, ${r.groups} groups`;
      log(`  ${figure} (${r.records} records in ${r.seconds.toFixed(1)} s${cpu}${groups}${r.gate ? `, gate ${r.gate.ok ? 'ok' : 'FAILED'}` : ''})${r.error ? `: ${r.error}` : ''}`);
      for (const p of r.gate?.problems ?? []) log(`    ${p}`);
    }
  }
  const load = latencyLoad();
  const basis = median(runs.filter((r) => r.row === 'noop' && r.eventsPerSec !== undefined).map((r) => r.eventsPerSec!));
  const figures: ViewsFigure[] = [];
  for (const row of selected) {
    const mine = runs.filter((r) => r.row === row);
    const ok = mine.filter((r) => r.eventsPerSec !== undefined);
    const eventsPerSec = median(ok.map((r) => r.eventsPerSec!));
    let latency: ViewsLatency | undefined;
    if (row !== 'raw' && eventsPerSec !== undefined && s.latencySeconds > 0) {
      log(`views latency: ${row} at ${Math.round(load * eventsPerSec)} events/s (${Math.round(load * 100)}% of ${Math.round(eventsPerSec)}) …`);
      latency = await latencyAt(ctx, row, load * eventsPerSec);
      log(latency.stats ? `  p50 ${Math.round(latency.stats.p50Ms)} ms, p99 ${Math.round(latency.stats.p99Ms)} ms (${latency.stats.samples} records)` : `  no figure: ${latency.error}`);
    }
    figures.push({
      row,
      eventsPerSec,
      cpuUsPerEvent: median(ok.map((r) => r.cpuUsPerEvent!)),
      ratio: eventsPerSec !== undefined && basis !== undefined ? eventsPerSec / basis : undefined,
      groups: median(ok.filter((r) => r.groups !== undefined).map((r) => r.groups!)),
      latency,
      runs: mine,
    });
  }
  return { topic: corpus.topic, records: spec.events, liveRows: expected.liveRows, reused: corpus.reused, latencyLoad: load, figures, targets: viewsTargets(figures) };
}

const FLAT_TOLERANCE = 1.25;

function viewsTargets(figures: readonly ViewsFigure[]): ViewsReport['targets'] {
  const out: { target: string; figure: string; pass: boolean | undefined }[] = [];
  const ratio = (f: ViewsFigure) => (f.ratio === undefined ? 'no figure' : `${f.ratio.toFixed(2)}×`);
  for (const f of figures) {
    const info = ROW_INFO[f.row];
    if (info.target === 'stateless') out.push({ target: `${f.row}: ≥ 0.8× the router with a no-op sink`, figure: ratio(f), pass: f.ratio === undefined ? undefined : f.ratio >= 0.8 });
    if (info.target === 'aggregation') out.push({ target: `${f.row}: ≥ 0.5× the router with a no-op sink`, figure: ratio(f), pass: f.ratio === undefined ? undefined : f.ratio >= 0.5 });
  }
  for (const f of figures) {
    if (f.row === 'raw' || f.row === 'noop') continue;
    const p99 = f.latency?.stats?.p99Ms;
    out.push({ target: `${f.row}: p99 append → result committed ≤ 250 ms at 20% load`, figure: p99 === undefined ? 'no figure' : `${Math.round(p99)} ms`, pass: p99 === undefined ? undefined : p99 <= 250 });
  }
  const sweep = (['group-1k', 'group-100k', 'group-1M'] as const).map((r) => figures.find((f) => f.row === r));
  const cpu = sweep.map((f) => f?.cpuUsPerEvent);
  if (cpu.every((c) => c !== undefined)) {
    const [base, ...rest] = cpu as number[];
    const worst = Math.max(...rest.map((c) => c / base!));
    out.push({
      target: `cost per event flat from 1k to 1M group values (CPU µs/event of 100k and 1M within ${FLAT_TOLERANCE}× of 1k)`,
      figure: `${cpu.map((c) => c!.toFixed(0)).join(' / ')} µs (worst ${worst.toFixed(2)}×)`,
      pass: worst <= FLAT_TOLERANCE,
    });
  } else out.push({ target: 'cost per event flat from 1k to 1M group values', figure: 'not every group-by row has a figure', pass: undefined });
  return out;
}

const num = (x: number | undefined, digits = 0) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));

export function viewsMarkdown(r: ViewsReport): string {
  const lines = [
    '## Views',
    '',
    `Corpus \`${r.topic}\`: ${r.records} records of one table (\`public.orders\`: creates, updates, some moving rows between groups, deletes with tombstones), ${r.liveRows} live rows at the end. ` +
      `State in PostgreSQL (a schema per run, dropped afterwards); results through the outbox to the output sink named (the PostgreSQL sink, on the state's database, writes them in the state transaction). p99: open loop at ${Math.round(r.latencyLoad * 100)}% of the row's own figure, append to result committed (the Kafka commit that follows the state transaction and the output's acknowledgement).`,
    '',
    '| row | what | output | events/s | × no-op router | CPU µs/event | groups at the end | p50 / p99 ms at 20% (offered/s) |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const f of r.figures) {
    const info = ROW_INFO[f.row];
    const lat = f.latency
      ? f.latency.stats
        ? `${num(f.latency.stats.p50Ms)} / ${num(f.latency.stats.p99Ms)} (${num(f.latency.offeredPerSec)})`
        : `no figure: ${f.latency.error}`
      : '-';
    const failed = f.eventsPerSec === undefined ? ` (no figure: ${f.runs.map((x) => x.error ?? x.gate?.problems.join('; ')).filter(Boolean).join('; ')})` : '';
    lines.push(
      `| ${f.row} | ${info.what} | ${info.output} | ${num(f.eventsPerSec)}${failed} | ${f.ratio === undefined ? '-' : `${f.ratio.toFixed(2)}×`} | ${num(f.cpuUsPerEvent, 1)} | ${f.groups ?? '-'} | ${lat} |`,
    );
  }
  lines.push('');
  lines.push('| target | figure | met |', '| --- | --- | --- |');
  for (const t of r.targets) lines.push(`| ${t.target} | ${t.figure} | ${t.pass === undefined ? 'no figure' : t.pass ? 'yes' : 'NO'} |`);
  lines.push('');
  return lines.join('\n');
}
