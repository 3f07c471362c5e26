/**
 * `npm run bench`: the measured speed of cdc-router, on one deterministic corpus, against what it
 * must beat and what it cannot beat. See bench/README.md; settings in bench/settings.ts.
 *
 * Per round every mode runs once, each in a fresh process and consumer group (the order rotates
 * from round to round, so no mode always follows the same one); then one open-loop latency run.
 * Reports go to bench/results/<timestamp>.{md,json}.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { expectCorpus, type CorpusExpectation, type CorpusSpec } from './corpus.ts';
import { ensureCorpusTopic } from './corpus-topic.ts';
import { latencyRun } from './latency-run.ts';
import { cleanUpOnSignals, log, sleep, withCleanup } from './lifecycle.ts';
import { commitWatch, endOffsets, reachedEnd } from './offsets.ts';
import type { Servers, WorkerTask } from './protocol.ts';
import {
  MODE_LABELS,
  figures,
  machine,
  markdown,
  median,
  ratios,
  targets as targetTable,
  type LatencyResult,
  type Report,
  type RunResult,
} from './report.ts';
import { readSettings, type BenchSettings, type Mode } from './settings.ts';
import { dropTargets, openStoreClients, targetsFor, verifyStores, type StoreClients } from './stores.ts';
import { viewsBench, viewsMarkdown } from './views-run.ts';
import { startWorker } from './worker-handle.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));

function ensureServers(settings: BenchSettings): void {
  const needsEs = settings.latencySeconds > 0 || settings.modes.some((m) => m === 'naive' || m === 'stores' || m === 'ceiling-elasticsearch');
  for (const script of ['kafka', ...(needsEs ? ['elasticsearch'] : [])]) {
    execFileSync('bash', [`scripts/${script}.sh`, 'up'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

interface Context {
  readonly settings: BenchSettings;
  readonly servers: Servers;
  readonly spec: CorpusSpec;
  readonly expectation: CorpusExpectation;
  readonly topic: string;
  readonly end: ReadonlyMap<number, string>;
  readonly admin: Admin;
  readonly clients: StoreClients;
  readonly runId: string;
}

function taskFor(ctx: Context, mode: Mode, label: string, group: string): WorkerTask {
  const base = { servers: ctx.servers, topic: ctx.topic, group };
  const targets = targetsFor(ctx.runId, label);
  switch (mode) {
    case 'raw':
      return { kind: 'raw', ...base };
    case 'naive':
      return { kind: 'naive', ...base, targets };
    case 'noop':
    case 'stores':
      return { kind: 'router', sinks: mode, ...base, targets, latency: false };
    case 'ceiling-postgres':
    case 'ceiling-redis':
    case 'ceiling-elasticsearch':
      return {
        kind: 'ceiling',
        store: mode === 'ceiling-postgres' ? 'postgres' : mode === 'ceiling-redis' ? 'redis' : 'elasticsearch',
        servers: ctx.servers,
        corpus: ctx.spec,
        targets,
        batch: ctx.settings.ceilingBatch,
        lanes: ctx.settings.ceilingLanes,
      };
  }
}

async function runOnce(ctx: Context, mode: Mode, round: number): Promise<RunResult> {
  const label = `${mode.replace('ceiling-', 'e')}${round + 1}`;
  const group = `cdc-bench-${ctx.runId}-${label}`;
  const task = taskFor(ctx, mode, label, group);
  const writes = mode !== 'raw' && mode !== 'noop';
  const consumes = task.kind !== 'ceiling';
  const cleanup = async () => {
    if (writes && !process.env['BENCH_KEEP']) {
      const problems = await dropTargets(ctx.clients, targetsFor(ctx.runId, label));
      for (const p of problems) log(`  cleanup: ${p}`);
    }
    if (consumes) await ctx.admin.deleteGroups([group]).catch(() => undefined);
  };
  const timeoutMs = ctx.settings.runTimeoutSeconds * 1000;
  const fail = (error: string, records = 0, seconds = 0): RunResult => ({ mode, round, eventsPerSec: undefined, records, seconds, cpuUsPerEvent: undefined, error });

  return withCleanup(cleanup, async () => {
    const worker = startWorker(task);
    try {
      await worker.next('ready', 120_000);
      worker.send({ type: 'start' });
      const started = await worker.next('started', 60_000);
      let measured: { at: number; cpuUs: number; processed: number };
      let finishedAll: boolean;
      if (task.kind === 'ceiling') {
        measured = await worker.next('done', timeoutMs);
        finishedAll = true;
        worker.send({ type: 'stop' });
        await worker.next('stopped', 120_000);
      } else {
        const budgetMs = mode === 'naive' ? ctx.settings.naiveSeconds * 1000 : timeoutMs;
        // Settles before the stop only when the worker breaks: then the polling ends at once.
        const stopped = worker.next('stopped', budgetMs + 120_000);
        stopped.catch(() => undefined);
        const broken = stopped.then(
          () => undefined,
          () => undefined,
        );
        // The naive consumer is stopped by its budget; the others fail when their commits stop moving.
        const poll = commitWatch(ctx.admin, group, ctx.topic, ctx.end, mode === 'naive' ? Infinity : ctx.settings.stallSeconds * 1000);
        let doneAt: number | undefined;
        let stalled: string | undefined;
        while (Date.now() - started.at < budgetMs && worker.child.connected) {
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
        finishedAll = doneAt !== undefined;
        if (!finishedAll && mode !== 'naive') {
          await worker.exit(120_000);
          return fail(stalled ?? `committed offsets did not reach the end offsets within ${ctx.settings.runTimeoutSeconds} s`);
        }
        measured = { at: doneAt ?? last.at, cpuUs: last.cpuUs, processed: finishedAll ? ctx.spec.events : last.processed };
      }
      await worker.exit(120_000);
      const seconds = (measured.at - started.at) / 1000;
      const records = measured.processed;
      let result: RunResult = {
        mode,
        round,
        eventsPerSec: records / seconds,
        records,
        seconds,
        cpuUsPerEvent: records > 0 ? measured.cpuUs / records : undefined,
        ...(mode === 'naive' ? { budgetReached: !finishedAll } : {}),
      };
      if (mode === 'stores') {
        const t0 = performance.now();
        const problems = await verifyStores(ctx.clients, targetsFor(ctx.runId, label), ctx.expectation, ctx.spec.seed);
        if (!(await reachedEnd(ctx.admin, group, ctx.topic, ctx.end))) problems.push('committed offsets are not the end offsets');
        const gate = { ok: problems.length === 0, problems, seconds: (performance.now() - t0) / 1000 };
        result = { ...result, gate, ...(gate.ok ? {} : { eventsPerSec: undefined, cpuUsPerEvent: undefined }) };
      }
      return result;
    } catch (err) {
      worker.child.kill('SIGKILL');
      await worker.exit(10_000);
      const message = err instanceof Error ? err.message : String(err);
      log(`  ${message}`);
      // The report keeps the first line; the stack is in the log above.
      return fail(message.split('\n')[0]!);
    }
  });
}

const rotate = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]!);

async function main(): Promise<void> {
  cleanUpOnSignals();
  const settings = readSettings();
  const startedAt = new Date();
  const host = machine();
  log(`cdc-router bench: ${host.cpus} CPUs, ${host.memoryGiB} GiB, Node ${host.node}, load ${host.loadAverageStart.join(' ')}`);
  ensureServers(settings);
  const servers: Servers = { broker: settings.broker, pgUrl: settings.pgUrl, redisUrl: settings.redisUrl, esUrl: settings.esUrl };
  const spec: CorpusSpec = { seed: settings.seed, events: settings.events, partitions: settings.partitions };

  let t0 = performance.now();
  const expectation = expectCorpus(spec);
  log(`corpus: ${spec.events} records, ${expectation.summary.liveRows} live rows at the end (expected state in ${Math.round(performance.now() - t0)} ms)`);

  const kafka = new Kafka({ clientId: 'cdc-bench', brokers: [settings.broker], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const clients = openStoreClients(servers);
  try {
    t0 = performance.now();
    const corpus = await ensureCorpusTopic(kafka, admin, spec, log);
    log(`corpus topic ${corpus.topic}: ${corpus.reused ? 'reused' : `produced in ${Math.round(corpus.produceSeconds)} s`}`);
    const ctx: Context = {
      settings,
      servers,
      spec,
      expectation,
      topic: corpus.topic,
      end: await endOffsets(admin, corpus.topic),
      admin,
      clients,
      runId: `${startedAt.getTime().toString(36)}`,
    };

    const runs: RunResult[] = [];
    for (let round = 0; round < settings.runs; round++) {
      for (const mode of rotate(settings.modes, round)) {
        log(`round ${round + 1}/${settings.runs}: ${MODE_LABELS[mode].letter} ${mode} …`);
        const r = await runOnce(ctx, mode, round);
        runs.push(r);
        const figure = r.eventsPerSec === undefined ? 'no figure' : `${Math.round(r.eventsPerSec)} events/s`;
        const cpu = r.cpuUsPerEvent === undefined ? '' : `, ${r.cpuUsPerEvent.toFixed(1)} µs CPU/event`;
        const gate = r.gate ? `, gate ${r.gate.ok ? 'ok' : 'FAILED'} (${r.gate.seconds.toFixed(1)} s)` : '';
        log(`  ${figure} (${r.records} records in ${r.seconds.toFixed(1)} s${cpu}${gate})${r.error ? `: ${r.error}` : ''}`);
        if (r.gate && !r.gate.ok) for (const p of r.gate.problems) log(`    ${p}`);
      }
    }

    const modeFigures = figures(settings.modes, runs);
    const basis = median(runs.filter((r) => r.mode === 'stores' && r.eventsPerSec !== undefined).map((r) => r.eventsPerSec!));
    let latency: LatencyResult | undefined;
    let latencyFloor: LatencyResult | undefined;
    if (settings.latencySeconds === 0) log('latency: skipped (BENCH_LATENCY_SECONDS=0)');
    else if (basis === undefined && settings.latencyRate === undefined) log('latency: skipped, no figure for d (cdc-router into the stores) to take 70% of');
    else {
      latency = await latencyRun({ ...ctx, kafka }, basis);
      log(latency.stats ? `  p50 ${latency.stats.p50Ms} ms, p99 ${latency.stats.p99Ms} ms (${latency.stats.samples} records)` : `  no figure: ${latency.error}`);
      if (settings.latencyFloor) {
        latencyFloor = await latencyRun({ ...ctx, kafka }, basis, 'floor');
        log(latencyFloor.stats ? `  p50 ${latencyFloor.stats.p50Ms} ms, p99 ${latencyFloor.stats.p99Ms} ms (${latencyFloor.stats.samples} records)` : `  no figure: ${latencyFloor.error}`);
      }
    }

    const views = settings.views ? await viewsBench({ settings, servers, kafka, admin, clients, runId: ctx.runId }) : undefined;

    const ratioFigures = ratios(modeFigures);
    const report: Report = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      machine: { ...host, loadAverageEnd: loadavg().map((x) => Math.round(x * 100) / 100) },
      settings,
      corpus: { ...expectation.summary, topic: corpus.topic, reused: corpus.reused, produceSeconds: corpus.produceSeconds },
      modes: modeFigures,
      ratios: ratioFigures,
      latency,
      latencyFloor,
      targets: targetTable(ratioFigures, modeFigures, latency),
    };
    const text = markdown(report) + (views ? `\n${viewsMarkdown(views)}` : '');
    await mkdir(RESULTS, { recursive: true });
    const stamp = startedAt.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
    await writeFile(`${RESULTS}${stamp}.md`, text);
    await writeFile(`${RESULTS}${stamp}.json`, JSON.stringify({ ...report, views }, null, 2) + '\n');
    console.log(`\n${text}`);
    log(`written: bench/results/${stamp}.md and .json`);
  } finally {
    await clients.close();
    await admin.disconnect();
  }
}

await main();
