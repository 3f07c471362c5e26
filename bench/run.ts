/**
 * `npm run bench`: the measured speed of cdc-router, on one deterministic corpus, against what it
 * must beat and what it cannot beat. See bench/README.md; settings in bench/settings.ts.
 *
 * Per round every mode runs once, each in a fresh process and consumer group (the order rotates
 * from round to round, so no mode always follows the same one); then one open-loop latency run.
 * Reports go to bench/results/<timestamp>.{md,json}.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, type Admin, type Producer } from 'kafkajs';
import { createCorpusGenerator, expectCorpus, serialize, type CorpusExpectation, type CorpusSpec } from './corpus.ts';
import { ensureCorpusTopic } from './corpus-topic.ts';
import type { LatencyWindow, ParentMessage, Servers, WorkerMessage, WorkerTask } from './protocol.ts';
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

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));

const began = performance.now();
const log = (line: string) => console.error(`[${((performance.now() - began) / 1000).toFixed(1).padStart(6)} s] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Cleanups of what is under way, run on Ctrl-C too. */
const pendingCleanups = new Set<() => Promise<unknown>>();
async function withCleanup<T>(cleanup: () => Promise<unknown>, fn: () => Promise<T>): Promise<T> {
  pendingCleanups.add(cleanup);
  try {
    return await fn();
  } finally {
    pendingCleanups.delete(cleanup);
    await cleanup().catch((err: unknown) => log(`  cleanup failed: ${String(err)}`));
  }
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void Promise.allSettled([...pendingCleanups].map((c) => c())).finally(() => process.exit(130));
  });
}

function ensureServers(settings: BenchSettings): void {
  const needsEs = settings.modes.some((m) => m === 'naive' || m === 'stores' || m === 'ceiling-elasticsearch');
  for (const script of ['kafka', ...(needsEs ? ['elasticsearch'] : [])]) {
    execFileSync('bash', [`scripts/${script}.sh`, 'up'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  }
}

/** A forked worker and its messages, awaited by type; a failure or an exit rejects every wait. */
interface WorkerHandle {
  readonly child: ChildProcess;
  next<T extends WorkerMessage['type']>(type: T, timeoutMs: number): Promise<Extract<WorkerMessage, { type: T }>>;
  send(message: ParentMessage): void;
  /** Resolves when the process has exited; kills it after `timeoutMs`. */
  exit(timeoutMs: number): Promise<void>;
}

function startWorker(task: WorkerTask): WorkerHandle {
  const child = fork(WORKER, [JSON.stringify(task)], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox: WorkerMessage[] = [];
  let broken: Error | undefined;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  child.on('message', (m: WorkerMessage) => {
    if (m.type === 'failed') broken = new Error(`worker failed: ${m.message}`);
    else inbox.push(m);
    notify();
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      broken ??= new Error(`worker exited (code ${code}, signal ${signal})`);
      notify();
      resolve();
    }),
  );
  return {
    child,
    next: <T extends WorkerMessage['type']>(type: T, timeoutMs: number) =>
      new Promise<Extract<WorkerMessage, { type: T }>>((resolve, reject) => {
        const check = () => {
          const i = inbox.findIndex((m) => m.type === type);
          if (i < 0 && !broken) return;
          waiters.delete(check);
          clearTimeout(deadline);
          if (i >= 0) resolve(inbox.splice(i, 1)[0] as Extract<WorkerMessage, { type: T }>);
          else reject(broken);
        };
        const deadline = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`worker: no ${type} within ${Math.round(timeoutMs / 1000)} s`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    send(message) {
      if (child.connected) child.send(message);
    },
    async exit(timeoutMs) {
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Committed offsets of a group on a topic have reached the end offsets. */
async function reachedEnd(admin: Admin, group: string, topic: string, end: ReadonlyMap<number, string>): Promise<boolean> {
  // A failed poll (the coordinator busy, a timeout) only means: not known yet.
  const [res] = await admin.fetchOffsets({ groupId: group, topics: [topic] }).catch(() => []);
  const committed = new Map((res?.partitions ?? []).map((p) => [p.partition, p.offset]));
  return [...end].every(([p, e]) => committed.get(p) === e);
}

async function endOffsets(admin: Admin, topic: string): Promise<Map<number, string>> {
  return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p.high]));
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
    if (writes) {
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
        let doneAt: number | undefined;
        while (Date.now() - started.at < budgetMs && worker.child.connected) {
          if (await reachedEnd(ctx.admin, group, ctx.topic, ctx.end)) {
            doneAt = Date.now();
            break;
          }
          await Promise.race([sleep(ctx.settings.pollMs), broken]);
        }
        worker.send({ type: 'stop' });
        const last = await stopped;
        finishedAll = doneAt !== undefined;
        if (!finishedAll && mode !== 'naive') {
          await worker.exit(120_000);
          return fail(`committed offsets did not reach the end offsets within ${ctx.settings.runTimeoutSeconds} s`);
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

/** Pre-serialized records of the latency run, in generator order: serializing is not the producer's live work. */
function latencyMessages(seed: number, partitions: number, count: number): { partition: number; key: Buffer; value: Buffer | null }[] {
  const gen = createCorpusGenerator(seed, partitions);
  return Array.from({ length: count }, () => {
    const r = gen.next();
    const { key, value } = serialize(seed, r);
    return { partition: r.partition, key: Buffer.from(key), value: value === null ? null : Buffer.from(value) };
  });
}

/**
 * Open loop: record i is due at start + i/rate, whatever happened to the ones before it; its
 * timestamp is the due time, so a producer falling behind shows as latency, not as a lower rate.
 */
async function produceOpenLoop(
  producer: Producer,
  topic: string,
  rate: number,
  messages: readonly { partition: number; key: Buffer; value: Buffer | null }[],
): Promise<{ startMs: number; behindMaxMs: number; failed: number }> {
  const startMs = Date.now() + 20;
  const inflight = new Set<Promise<unknown>>();
  let sent = 0;
  let failed = 0;
  let behindMaxMs = 0;
  while (sent < messages.length) {
    const now = Date.now();
    const due = Math.min(messages.length, Math.floor(((now - startMs) * rate) / 1000) + 1);
    if (due > sent) {
      behindMaxMs = Math.max(behindMaxMs, now - (startMs + (sent * 1000) / rate));
      const batch = messages.slice(sent, due).map((m, j) => ({ ...m, timestamp: String(Math.round(startMs + ((sent + j) * 1000) / rate)) }));
      const p = producer.send({ topic, acks: -1, messages: batch }).catch(() => void (failed += batch.length));
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      sent = due;
    }
    await sleep(2);
  }
  await Promise.all(inflight);
  return { startMs, behindMaxMs, failed };
}

async function latencyRun(ctx: Context, kafka: Kafka, basisPerSec: number): Promise<LatencyResult> {
  const s = ctx.settings;
  const rate = s.latencyLoad * basisPerSec;
  const total = Math.max(1, Math.round(rate * (s.latencyWarmupSeconds + s.latencySeconds)));
  const base = { offeredPerSec: rate, basisPerSec, load: s.latencyLoad, seconds: s.latencySeconds, warmupSeconds: s.latencyWarmupSeconds };
  const topic = `cdc-bench.latency.${ctx.runId}`;
  const group = `cdc-bench-${ctx.runId}-latency`;
  const targets = targetsFor(ctx.runId, 'latency');
  log(`latency: ${Math.round(rate)} events/s (${Math.round(s.latencyLoad * 100)}% of ${Math.round(basisPerSec)}) for ${s.latencyWarmupSeconds} + ${s.latencySeconds} s`);
  const messages = latencyMessages(ctx.spec.seed + 1, ctx.spec.partitions, total);
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  const cleanup = async () => {
    await producer.disconnect().catch(() => undefined);
    for (const p of await dropTargets(ctx.clients, targets)) log(`  cleanup: ${p}`);
    await ctx.admin.deleteGroups([group]).catch(() => undefined);
    await ctx.admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  };
  return withCleanup(cleanup, async () => {
    await ctx.admin.createTopics({ topics: [{ topic, numPartitions: ctx.spec.partitions }], waitForLeaders: true });
    await producer.connect();
    const worker = startWorker({ kind: 'router', sinks: 'stores', servers: ctx.servers, topic, group, targets, latency: true });
    try {
      await worker.next('ready', 120_000);
      worker.send({ type: 'start' });
      await worker.next('running', 120_000);
      const drained = async () => {
        const end = await endOffsets(ctx.admin, topic);
        const deadline = Date.now() + s.runTimeoutSeconds * 1000;
        while (!(await reachedEnd(ctx.admin, group, topic, end))) {
          if (Date.now() > deadline || !worker.child.connected) throw new Error('the router did not commit everything appended');
          await sleep(s.pollMs);
        }
      };
      // Warm-up at the same rate, drained, so that no cold-start backlog spills into the measured part.
      const warmupCount = Math.round(rate * s.latencyWarmupSeconds);
      const warmup = await produceOpenLoop(producer, topic, rate, messages.slice(0, warmupCount));
      await drained();
      const sent = await produceOpenLoop(producer, topic, rate, messages.slice(warmupCount));
      await drained();
      const window: LatencyWindow = { fromMs: sent.startMs, toMs: sent.startMs + s.latencySeconds * 1000 + 1 };
      worker.send({ type: 'stop', window });
      const stopped = await worker.next('stopped', 120_000);
      await worker.exit(60_000);
      const failed = warmup.failed + sent.failed;
      const produced = { produced: total - failed, producerBehindMaxMs: sent.behindMaxMs };
      if (failed > 0) return { ...base, ...produced, stats: undefined, error: `${failed} appends failed` };
      return { ...base, ...produced, stats: stopped.latency };
    } catch (err) {
      worker.child.kill('SIGKILL');
      await worker.exit(10_000);
      return { ...base, produced: 0, producerBehindMaxMs: 0, stats: undefined, error: err instanceof Error ? err.message : String(err) };
    }
  });
}

const rotate = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]!);

async function main(): Promise<void> {
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
    if (settings.latencySeconds === 0) log('latency: skipped (BENCH_LATENCY_SECONDS=0)');
    else if (basis === undefined) log('latency: skipped, no figure for d (cdc-router into the stores) to take 70% of');
    else {
      latency = await latencyRun(ctx, kafka, basis);
      log(latency.stats ? `  p50 ${latency.stats.p50Ms} ms, p99 ${latency.stats.p99Ms} ms (${latency.stats.samples} records)` : `  no figure: ${latency.error}`);
    }

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
      targets: targetTable(ratioFigures, modeFigures, latency),
    };
    const text = markdown(report);
    await mkdir(RESULTS, { recursive: true });
    const stamp = startedAt.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
    await writeFile(`${RESULTS}${stamp}.md`, text);
    await writeFile(`${RESULTS}${stamp}.json`, JSON.stringify(report, null, 2) + '\n');
    console.log(`\n${text}`);
    log(`written: bench/results/${stamp}.md and .json`);
  } finally {
    await clients.close();
    await admin.disconnect();
  }
}

await main();
