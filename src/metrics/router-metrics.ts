import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { errorMessage } from '../errors.ts';
import type { CircuitState, RouterEvents } from '../events.ts';
import { createCommitLatencyTracker } from './commit-latency.ts';
import { partitionLag, totalLag } from './partition-lag.ts';
import { createRateWindow, type RateWindow } from './rate-window.ts';
import type { PartitionStatus, SinkHealth, SinkStatus, StatusReport } from './status-report.ts';

/** End and committed offsets of one partition, as the lag monitor fetched them. */
export interface PartitionOffsets {
  readonly topic: string;
  readonly partition: number;
  /** The first offset still in the partition. */
  readonly low: bigint;
  readonly end: bigint;
  /** The group's committed offset; undefined when it never committed one. */
  readonly committed: bigint | undefined;
}

export type PausedSource = () => readonly { readonly topic: string; readonly partitions: readonly number[] }[];

export interface RouterMetricsOptions {
  readonly events: RouterEvents;
  readonly groupId: string;
  readonly sinkNames: readonly string[];
  /** Where a group without a committed offset starts: its lag counts from the first offset, or is unknown. */
  readonly fromBeginning: boolean;
  readonly now?: () => number;
}

/** The metrics registry and the state behind /healthz, /readyz and /status, all fed by RouterEvents. */
export interface RouterMetrics {
  readonly registry: Registry;
  /** Every sink started: one of the two conditions of readiness. */
  markSinksStarted(): void;
  /** Shutting down: not alive and not ready any more. */
  markStopping(): void;
  /** Paused partitions are read from the consumer when scraped (it pauses for halts, backpressure, breakers). */
  watchPaused(source: PausedSource): void;
  /** Partitions this member owns, by topic, from its last group join. */
  assignment(): Readonly<Record<string, readonly number[]>>;
  setOffsets(offsets: readonly PartitionOffsets[]): void;
  alive(): boolean;
  readiness(): { ready: boolean; reasons: string[] };
  status(): StatusReport;
  /** Stops listening to events. */
  close(): void;
}

const SINK_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH_RECORDS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
const END_TO_END_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const COMMIT_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const CIRCUIT_VALUE: Record<CircuitState, number> = { closed: 0, 'half-open': 1, open: 2 };

interface SinkState {
  started: boolean;
  circuit: CircuitState;
  written: number;
  retries: number;
  throttledMs: number;
  lastWriteAt: number | undefined;
  lastError: string | undefined;
  lastErrorAt: number | undefined;
  readonly writtenRate: RateWindow;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

export function createRouterMetrics(options: RouterMetricsOptions): RouterMetrics {
  const { events } = options;
  const now = options.now ?? Date.now;
  const startedAt = now();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  // Label sets stay bounded: table, op, sink, topic, partition, plus the fixed outcome and stage enums.
  const consumed = new Counter({
    name: 'cdc_router_records_consumed_total',
    help: 'Kafka records handed to the pipeline',
    labelNames: ['topic', 'partition'] as const,
    registers,
  });
  const processed = new Counter({
    name: 'cdc_router_records_processed_total',
    help: 'Records by outcome: written (acknowledged by the sink), filtered, skipped, dead_lettered, failed (partition halted)',
    labelNames: ['table', 'op', 'sink', 'outcome'] as const,
    registers,
  });
  const sinkWrite = new Histogram({
    name: 'cdc_router_sink_write_duration_seconds',
    help: "Duration of one partition's sink batch write, with its wait to go out combined with other partitions' batches",
    labelNames: ['sink'] as const,
    buckets: SINK_SECONDS,
    registers,
  });
  const sinkBatch = new Histogram({
    name: 'cdc_router_sink_batch_size_records',
    help: 'Records per sink batch write',
    labelNames: ['sink'] as const,
    buckets: BATCH_RECORDS,
    registers,
  });
  const fromSource = new Histogram({
    name: 'cdc_router_source_to_commit_latency_seconds',
    help: "From the change's source commit time (source.ts_ms) to the Kafka commit of its offset",
    labelNames: ['topic'] as const,
    buckets: END_TO_END_SECONDS,
    registers,
  });
  const fromAppend = new Histogram({
    name: 'cdc_router_kafka_to_commit_latency_seconds',
    help: "From the record's Kafka timestamp to the Kafka commit of its offset",
    labelNames: ['topic'] as const,
    buckets: END_TO_END_SECONDS,
    registers,
  });
  const commitDuration = new Histogram({
    name: 'cdc_router_commit_duration_seconds',
    help: 'Duration of one offset commit request',
    labelNames: ['topic'] as const,
    buckets: COMMIT_SECONDS,
    registers,
  });
  const lagGauge = new Gauge({
    name: 'cdc_router_consumer_lag_records',
    help: "End offset minus the group's committed offset, per owned partition (refreshed every metrics.lag_interval_ms)",
    labelNames: ['topic', 'partition'] as const,
    registers,
  });
  const inFlightGauge = new Gauge({
    name: 'cdc_router_records_in_flight',
    help: 'Records of the batch the pipeline is working on, per partition',
    labelNames: ['topic', 'partition'] as const,
    registers,
  });
  let pausedSource: PausedSource = () => [];
  // Read from the consumer at each scrape: kafkajs's own paused set is the truth.
  new Gauge({
    name: 'cdc_router_paused_partitions',
    help: 'Owned partitions the consumer does not fetch (halted at a failed record, backpressure, a breaker)',
    labelNames: ['topic'] as const,
    registers,
    collect() {
      this.reset();
      for (const topic of Object.keys(assignment)) this.set({ topic }, 0);
      for (const { topic, partitions } of pausedSource()) this.set({ topic }, partitions.length);
    },
  });
  const retries = new Counter({
    name: 'cdc_router_sink_retries_total',
    help: 'Sink writes retried after a retriable failure',
    labelNames: ['sink'] as const,
    registers,
  });
  const throttled = new Counter({
    name: 'cdc_router_sink_throttled_seconds_total',
    help: "Time sink writes waited for the sink's rate_limit",
    labelNames: ['sink'] as const,
    registers,
  });
  const circuitGauge = new Gauge({
    name: 'cdc_router_sink_circuit_state',
    help: "State of the sink's circuit breaker: 0 closed, 1 half-open, 2 open",
    labelNames: ['sink'] as const,
    registers,
  });
  const dlqEntries = new Counter({
    name: 'cdc_router_dlq_entries_total',
    help: 'Records stored in the dead-letter queue, by failure stage and sink',
    labelNames: ['stage', 'sink'] as const,
    registers,
  });

  const viewChanges = new Counter({
    name: 'cdc_router_view_changes_total',
    help: "Input changes of a view: applied to its state, skipped (a redelivery recognised by its offset), failed (dead-lettered or retried), late (too late for its window: to the late sink, or among failed to the dead-letter queue)",
    labelNames: ['view', 'outcome'] as const,
    registers,
  });
  const viewResults = new Counter({
    name: 'cdc_router_view_results_total',
    help: 'Results a view produced (group rows changed or deleted), and delivered: acknowledged by its output sink',
    labelNames: ['view', 'stage'] as const,
    registers,
  });
  const viewResultFailures = new Counter({
    name: 'cdc_router_view_result_failures_total',
    help: 'Results the output sink refused for good (logged with their content)',
    labelNames: ['view'] as const,
    registers,
  });
  const viewTransaction = new Histogram({
    name: 'cdc_router_view_transaction_seconds',
    help: "Duration of one batch's state transaction of a view",
    labelNames: ['view'] as const,
    buckets: SINK_SECONDS,
    registers,
  });

  // --- state behind /readyz and /status ---
  let sinksStarted = false;
  let stopping = false;
  let joined = false;
  let memberId: string | null = null;
  let assignment: Record<string, number[]> = {};
  const committed = new Map<string, bigint>();
  const offsets = new Map<string, PartitionOffsets>();
  let offsetsAt: number | undefined;
  const inFlight = new Map<string, number>();
  const dlqByStage = new Map<string, number>();
  const sinks = new Map<string, SinkState>();
  const rate = () => createRateWindow({ startedAt });
  const rates = { consumed: rate(), written: rate(), filtered: rate(), skipped: rate(), dead_lettered: rate(), failed: rate() };
  const sinkState = (name: string): SinkState => {
    let s = sinks.get(name);
    if (!s) {
      s = {
        started: sinksStarted,
        circuit: 'closed',
        written: 0,
        retries: 0,
        throttledMs: 0,
        lastWriteAt: undefined,
        lastError: undefined,
        lastErrorAt: undefined,
        writtenRate: rate(),
      };
      sinks.set(name, s);
      circuitGauge.set({ sink: name }, 0);
    }
    return s;
  };
  for (const name of options.sinkNames) sinkState(name);

  // Observed once per record: the labelled children are looked up once per topic, not hashed each time.
  const perTopic = new Map<string, { append: Histogram.Internal<'topic'>; source: Histogram.Internal<'topic'> }>();
  const latency = createCommitLatencyTracker((topic, appendS, sourceS) => {
    let h = perTopic.get(topic);
    if (!h) perTopic.set(topic, (h = { append: fromAppend.labels({ topic }), source: fromSource.labels({ topic }) }));
    h.append.observe(appendS);
    if (!Number.isNaN(sourceS)) h.source.observe(sourceS);
  });

  /** The newer of our last commit and the broker's answer. */
  const positionOf = (o: PartitionOffsets): bigint | undefined => {
    const ours = committed.get(tpKey(o.topic, o.partition));
    if (o.committed === undefined) return ours;
    return ours === undefined || o.committed > ours ? o.committed : ours;
  };
  const lagOf = (o: PartitionOffsets): bigint | undefined => partitionLag(o, positionOf(o), options.fromBeginning);
  const setLag = (o: PartitionOffsets) => {
    const lag = lagOf(o);
    const labels = { topic: o.topic, partition: String(o.partition) };
    if (lag === undefined) lagGauge.remove(labels);
    else lagGauge.set(labels, Number(lag));
  };
  const owns = (topic: string, partition: number) => assignment[topic]?.includes(partition) ?? false;

  const offs = [
    events.on('view.applied', (v) => {
      viewChanges.inc({ view: v.view, outcome: 'applied' }, v.applied);
      viewChanges.inc({ view: v.view, outcome: 'skipped' }, v.skipped);
      viewChanges.inc({ view: v.view, outcome: 'failed' }, v.failed);
      viewChanges.inc({ view: v.view, outcome: 'late' }, v.late);
      viewResults.inc({ view: v.view, stage: 'produced' }, v.results);
      viewTransaction.observe({ view: v.view }, v.durationMs / 1000);
    }),
    events.on('view.delivered', (v) => viewResults.inc({ view: v.view, stage: 'delivered' }, v.results)),
    events.on('view.result-failed', (v) => viewResultFailures.inc({ view: v.view })),
    events.on('batch.started', (b) => {
      inFlight.set(tpKey(b.topic, b.partition), b.records);
      inFlightGauge.set({ topic: b.topic, partition: String(b.partition) }, b.records);
    }),
    events.on('batch.processed', (b) => {
      const t = now();
      inFlight.set(tpKey(b.topic, b.partition), 0);
      inFlightGauge.set({ topic: b.topic, partition: String(b.partition) }, 0);
      consumed.inc({ topic: b.topic, partition: String(b.partition) }, b.records);
      rates.consumed.add(b.records, t);
      for (const o of b.outcomes ?? []) {
        processed.inc({ table: o.table, op: o.op, sink: o.sink, outcome: o.outcome }, o.count);
        rates[o.outcome].add(o.count, t);
        if (o.outcome === 'written') {
          const s = sinkState(o.sink);
          s.written += o.count;
          s.writtenRate.add(o.count, t);
        }
      }
      if (b.timings) latency.processed(b.topic, b.partition, b.timings, t);
    }),
    events.on('batch.committed', (c) => {
      const offset = BigInt(c.offset);
      const k = tpKey(c.topic, c.partition);
      const prev = committed.get(k);
      if (prev === undefined || offset > prev) committed.set(k, offset);
      commitDuration.observe({ topic: c.topic }, c.durationMs / 1000);
      latency.committed(c.topic, c.partition, offset, now());
      const o = offsets.get(k);
      if (o) setLag(o);
    }),
    events.on('sink.written', (w) => {
      sinkWrite.observe({ sink: w.sink }, w.durationMs / 1000);
      sinkBatch.observe({ sink: w.sink }, w.records);
      sinkState(w.sink).lastWriteAt = now();
    }),
    events.on('sink.retry', (r) => {
      retries.inc({ sink: r.sink });
      const s = sinkState(r.sink);
      s.retries++;
      s.lastError = errorMessage(r.error);
      s.lastErrorAt = now();
    }),
    events.on('sink.throttled', (t) => {
      throttled.inc({ sink: t.sink }, t.waitedMs / 1000);
      sinkState(t.sink).throttledMs += t.waitedMs;
    }),
    events.on('sink.circuit', (c) => {
      sinkState(c.sink).circuit = c.state;
      circuitGauge.set({ sink: c.sink }, CIRCUIT_VALUE[c.state]);
    }),
    events.on('record.dead-lettered', (d) => {
      dlqEntries.inc({ stage: d.stage, sink: d.sink ?? '' });
      dlqByStage.set(d.stage, (dlqByStage.get(d.stage) ?? 0) + 1);
    }),
    events.on('group.joined', (g) => {
      joined = true;
      memberId = g.memberId;
      assignment = g.assignment;
      latency.retain(assignment);
      // Partitions taken away: their series and state belong to another member now.
      for (const [k, o] of offsets) {
        if (owns(o.topic, o.partition)) continue;
        offsets.delete(k);
        lagGauge.remove({ topic: o.topic, partition: String(o.partition) });
      }
      for (const k of [...inFlight.keys()]) {
        const [topic = '', partition = ''] = k.split('\u0000');
        if (owns(topic, Number(partition))) continue;
        inFlight.delete(k);
        inFlightGauge.remove({ topic, partition });
      }
      for (const k of [...committed.keys()]) {
        const [topic = '', partition = ''] = k.split('\u0000');
        if (!owns(topic, Number(partition))) committed.delete(k);
      }
    }),
  ];

  function readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (stopping) reasons.push('stopping');
    if (!sinksStarted) reasons.push('sinks not started');
    if (!joined) reasons.push('consumer has not joined the group');
    return { ready: reasons.length === 0, reasons };
  }

  function sinkHealth(s: SinkState): SinkHealth {
    if (!s.started) return 'starting';
    if (s.circuit === 'open') return 'down';
    if (s.circuit === 'half-open') return 'retrying';
    // The last thing that happened to it was a failure.
    if (s.lastErrorAt !== undefined && (s.lastWriteAt === undefined || s.lastErrorAt > s.lastWriteAt)) return 'retrying';
    return 'ok';
  }

  function status(): StatusReport {
    const t = now();
    const pausedNow = new Set(pausedSource().flatMap(({ topic, partitions }) => partitions.map((p) => tpKey(topic, p))));
    const lags: (bigint | undefined)[] = [];
    const partitions: PartitionStatus[] = Object.entries(assignment)
      .flatMap(([topic, ps]) => ps.map((partition) => ({ topic, partition })))
      .sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1))
      .map(({ topic, partition }) => {
        const k = tpKey(topic, partition);
        const o = offsets.get(k);
        const position = o ? positionOf(o) : committed.get(k);
        const lag = o ? lagOf(o) : undefined;
        lags.push(lag);
        return {
          topic,
          partition,
          committed: position === undefined ? null : Number(position),
          end: o ? Number(o.end) : null,
          lag: lag === undefined ? null : Number(lag),
          paused: pausedNow.has(k),
          in_flight: inFlight.get(k) ?? 0,
        };
      });
    const sinkStatuses: SinkStatus[] = [...sinks].map(([name, s]) => ({
      name,
      health: sinkHealth(s),
      circuit: s.circuit,
      written: s.written,
      retries: s.retries,
      throttled_seconds: s.throttledMs / 1000,
      last_write_at: iso(s.lastWriteAt),
      last_error: s.lastError ?? null,
      last_error_at: iso(s.lastErrorAt),
      written_per_second: s.writtenRate.perSecond(t),
    }));
    const { ready, reasons } = readiness();
    return {
      group: options.groupId,
      member_id: memberId,
      ready,
      not_ready: reasons,
      stopping,
      started_at: new Date(startedAt).toISOString(),
      uptime_seconds: (t - startedAt) / 1000,
      offsets_at: iso(offsetsAt),
      partitions,
      total_lag: ((t) => (t === undefined ? null : Number(t)))(totalLag(lags)),
      paused: partitions.filter((p) => p.paused).map((p) => ({ topic: p.topic, partition: p.partition })),
      sinks: sinkStatuses,
      dlq: { entries: [...dlqByStage.values()].reduce((a, n) => a + n, 0), by_stage: Object.fromEntries(dlqByStage) },
      rates: {
        window_seconds: 60,
        consumed_per_second: rates.consumed.perSecond(t),
        written_per_second: rates.written.perSecond(t),
        filtered_per_second: rates.filtered.perSecond(t),
        skipped_per_second: rates.skipped.perSecond(t),
        dead_lettered_per_second: rates.dead_lettered.perSecond(t),
        failed_per_second: rates.failed.perSecond(t),
      },
    };
  }

  return {
    registry,
    markSinksStarted() {
      sinksStarted = true;
      for (const s of sinks.values()) s.started = true;
    },
    markStopping() {
      stopping = true;
    },
    watchPaused(source) {
      pausedSource = source;
    },
    assignment: () => assignment,
    setOffsets(list) {
      offsetsAt = now();
      const seen = new Set<string>();
      for (const o of list) {
        if (!owns(o.topic, o.partition)) continue;
        const k = tpKey(o.topic, o.partition);
        seen.add(k);
        offsets.set(k, o);
        setLag(o);
      }
      for (const [k, o] of offsets) {
        if (seen.has(k)) continue;
        offsets.delete(k);
        lagGauge.remove({ topic: o.topic, partition: String(o.partition) });
      }
    },
    alive: () => !stopping,
    readiness,
    status,
    close() {
      for (const off of offs) off();
    },
  };
}
