/**
 * The open-loop latency run: cdc-router into the three stores (a fresh topic, group and targets)
 * while a producer appends at a fixed rate, whatever the router does. Record i is due at
 * start + i/rate and carries that time as its Kafka timestamp, so a producer falling behind shows
 * as latency, not as a lower rate. The stream is warm-up, then the measured part, then a tail that
 * goes on until every measured record is committed: the last measured records are committed under
 * the same load as the others, and the run never depends on the router draining a quiet topic.
 */
import type { Admin, Kafka, Producer } from 'kafkajs';
import { createCorpusGenerator, serialize, type CorpusSpec } from './corpus.ts';
import { log, sleep, withCleanup } from './lifecycle.ts';
import type { LatencyStats, Servers } from './protocol.ts';
import type { LatencyResult } from './report.ts';
import type { BenchSettings } from './settings.ts';
import { dropTargets, targetsFor, type StoreClients } from './stores.ts';
import { startWorker } from './worker-handle.ts';

export interface LatencyContext {
  readonly settings: BenchSettings;
  readonly servers: Servers;
  readonly spec: CorpusSpec;
  readonly kafka: Kafka;
  readonly admin: Admin;
  readonly clients: StoreClients;
  readonly runId: string;
}

export interface Outgoing {
  readonly partition: number;
  readonly key: Buffer;
  readonly value: Buffer | null;
}

/** The records of the stream: the counted ones serialized before the clock starts, the tail on the fly. */
function messageSource(seed: number, partitions: number, counted: number): (i: number) => Outgoing {
  const gen = createCorpusGenerator(seed, partitions);
  const next = (): Outgoing => {
    const r = gen.next();
    const { key, value } = serialize(seed, r);
    return { partition: r.partition, key: Buffer.from(key), value: value === null ? null : Buffer.from(value) };
  };
  const prepared = Array.from({ length: counted }, next);
  return (i) => prepared[i] ?? next();
}

export interface OpenLoop {
  readonly startMs: number;
  /** Resolves when every counted record is appended: per partition, the offset after its last counted record. */
  readonly countedAppended: Promise<ReadonlyMap<number, number>>;
  /** How far behind schedule the producer was at worst, over the counted records. */
  behindMaxMs(): number;
  /** Per counted record, from its due time to the broker's acknowledgement of its append (NaN: not acknowledged). */
  readonly appendedAfterMs: Float64Array;
  failed(): number;
  /** The first append error, when some failed. */
  firstError(): string | undefined;
  stop(): Promise<void>;
}

const SEND_MAX = 1_000;

export function startOpenLoop(producer: Producer, topic: string, rate: number, counted: number, message: (i: number) => Outgoing): OpenLoop {
  const startMs = Date.now() + 50;
  const required = new Map<number, number>();
  const countedSends: Promise<unknown>[] = [];
  const inflight = new Set<Promise<unknown>>();
  let sent = 0;
  let failed = 0;
  let firstError: string | undefined;
  let behindMaxMs = 0;
  const appendedAfterMs = new Float64Array(counted).fill(NaN);
  let stopping = false;
  let countedQueued: () => void = () => undefined;
  const allCountedQueued = new Promise<void>((r) => (countedQueued = r));

  const loop = (async () => {
    while (!stopping) {
      const now = Date.now();
      // At most SEND_MAX per request: after a stall of this process a request of everything due
      // would exceed the broker's message size limit (a partition's share is one record batch).
      const due = Math.min(sent + SEND_MAX, Math.floor(((now - startMs) * rate) / 1000) + 1);
      if (due > sent) {
        if (sent < counted) behindMaxMs = Math.max(behindMaxMs, now - (startMs + (sent * 1000) / rate));
        const countedIn = new Map<number, number>();
        const batch = [];
        for (let i = sent; i < due; i++) {
          const m = message(i);
          batch.push({ ...m, timestamp: String(Math.round(startMs + (i * 1000) / rate)) });
          if (i < counted) countedIn.set(m.partition, (countedIn.get(m.partition) ?? 0) + 1);
        }
        const first = sent;
        const last = due;
        const p = producer.send({ topic, acks: -1, messages: batch }).then(
          (meta) => {
            const ackMs = Date.now();
            for (let i = first; i < Math.min(last, counted); i++) appendedAfterMs[i] = ackMs - (startMs + (i * 1000) / rate);
            // Within a partition the batch keeps its order: the counted records come first.
            for (const r of meta) {
              const n = countedIn.get(r.partition);
              if (n) required.set(r.partition, Math.max(required.get(r.partition) ?? 0, Number(r.baseOffset) + n));
            }
          },
          (err: unknown) => {
            failed += batch.length;
            firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
          },
        );
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
        if (countedIn.size > 0) countedSends.push(p);
        if (sent < counted && due >= counted) countedQueued();
        sent = due;
      }
      await sleep(2);
    }
    await Promise.all(inflight);
  })();

  return {
    startMs,
    countedAppended: allCountedQueued.then(async () => {
      await Promise.all(countedSends);
      return required;
    }),
    behindMaxMs: () => behindMaxMs,
    appendedAfterMs,
    failed: () => failed,
    firstError: () => firstError,
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

/** p50/p99 of the measured records' due-to-appended times: the producer's and the broker's share of the latency. */
export function appendStats(ms: Float64Array): { readonly p50Ms: number; readonly p99Ms: number } {
  const sorted = ms.filter((x) => !Number.isNaN(x)).sort();
  const at = (p: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!);
  return { p50Ms: at(0.5), p99Ms: at(0.99) };
}

export async function committedOffsets(admin: Admin, group: string, topic: string): Promise<Map<number, number>> {
  const [res] = await admin.fetchOffsets({ groupId: group, topics: [topic] }).catch(() => []);
  return new Map((res?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
}

/**
 * At BENCH_LATENCY_RATE, else at BENCH_LATENCY_LOAD (70%) of `basisPerSec`, the figure of d.
 * `subject`: the router, or the latency floor (bench/mode-floor.ts) on a stream of its own.
 */
export async function latencyRun(ctx: LatencyContext, basisPerSec: number | undefined, subject: 'router' | 'floor' = 'router'): Promise<LatencyResult> {
  const s = ctx.settings;
  const load = s.latencyRate === undefined ? s.latencyLoad : undefined;
  const rate = s.latencyRate ?? s.latencyLoad * (basisPerSec ?? NaN);
  const counted = Math.max(1, Math.round(rate * (s.latencyWarmupSeconds + s.latencySeconds)));
  const base = { offeredPerSec: rate, basisPerSec, load, seconds: s.latencySeconds, warmupSeconds: s.latencyWarmupSeconds };
  const label = subject === 'router' ? 'latency' : 'latency-floor';
  const topic = `cdc-bench.${label}.${ctx.runId}`;
  const group = `cdc-bench-${ctx.runId}-${label}`;
  const targets = targetsFor(ctx.runId, label);
  const share = load === undefined ? 'BENCH_LATENCY_RATE' : `${Math.round(load * 100)}% of ${Math.round(basisPerSec ?? NaN)}`;
  log(`${label}: ${Math.round(rate)} events/s (${share}), ${s.latencyWarmupSeconds} s warm-up + ${s.latencySeconds} s measured`);
  const seed = ctx.spec.seed + 1;
  const message = messageSource(seed, ctx.spec.partitions, counted);
  const producer = ctx.kafka.producer({ allowAutoTopicCreation: false });
  const cleanup = async () => {
    await producer.disconnect().catch(() => undefined);
    for (const p of await dropTargets(ctx.clients, targets)) log(`  cleanup: ${p}`);
    await ctx.admin.deleteGroups([group]).catch(() => undefined);
    await ctx.admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  };
  const noFigure = (error: string, extra: Partial<LatencyResult> = {}): LatencyResult => ({
    ...base,
    produced: 0,
    producerBehindMaxMs: 0,
    stats: undefined,
    error,
    ...extra,
  });

  return withCleanup(cleanup, async () => {
    await ctx.admin.createTopics({ topics: [{ topic, numPartitions: ctx.spec.partitions }], waitForLeaders: true });
    await producer.connect();
    const worker = startWorker(
      subject === 'router'
        ? { kind: 'router', sinks: 'stores', servers: ctx.servers, topic, group, targets, latency: true }
        : { kind: 'floor', servers: ctx.servers, topic, group, targets, seed },
    );
    try {
      await worker.next('ready', 120_000);
      worker.send({ type: 'start' });
      await worker.next('running', 120_000);
      const stream = startOpenLoop(producer, topic, rate, counted, message);
      const required = await stream.countedAppended;
      // The tail: appends go on until the commits cover every counted record.
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
      const measuredFrom = Math.round(rate * s.latencyWarmupSeconds);
      const produced = {
        produced: counted,
        producerBehindMaxMs: stream.behindMaxMs(),
        appendedAfter: appendStats(stream.appendedAfterMs.subarray(measuredFrom)),
      };
      if (stream.failed() > 0) return noFigure(`${stream.failed()} appends failed, the first with ${stream.firstError()}`, produced);
      const stats: LatencyStats | undefined = stopped.latency;
      if (!covered) {
        return noFigure(
          `the ${subject} fell behind: measured records were still not committed ${s.latencyTailSeconds} s after the measured part ended ` +
            `(committed so far: ${stats?.samples ?? 0}; p99 of those ${Math.round(stats?.p99Ms ?? NaN)} ms)`,
          { ...produced, partial: stats },
        );
      }
      return { ...base, ...produced, stats };
    } catch (err) {
      worker.child.kill('SIGKILL');
      await worker.exit(10_000);
      return noFigure(err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err));
    }
  });
}
