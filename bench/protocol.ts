/**
 * How the orchestrator (bench/run.ts) and a measured process (bench/worker.ts) talk, over the
 * child-process IPC channel. Every run is a fresh process, so no run inherits another's JIT, heap
 * or connections, and its CPU time is its own.
 *
 *   parent                       worker
 *     fork ──────────────────────▶ prepare (connect, create targets: not measured)
 *          ◀────────────────────── ready
 *     start ─────────────────────▶ cpu and clock from here
 *          ◀────────────────────── started {at}, then running (consumer started / group joined)
 *          ◀────────────────────── done {at, cpu}     (ceilings: they finish on their own)
 *     stop {window?} ────────────▶ cpu read first, then shutdown
 *          ◀────────────────────── stopped {at, cpu, processed, latency?}
 */
import type { CorpusSpec } from './corpus.ts';

export interface Servers {
  readonly broker: string;
  readonly pgUrl: string;
  readonly redisUrl: string;
  readonly esUrl: string;
}

/** Where one run writes: its own PostgreSQL schema, Redis key prefix and Elasticsearch index prefix. */
export interface StoreTargets {
  readonly pgSchema: string;
  readonly redisPrefix: string;
  /** Indices are `<esPrefix>-<table>`. */
  readonly esPrefix: string;
}

export type CeilingStore = 'postgres' | 'redis' | 'elasticsearch';

export type WorkerTask =
  | { readonly kind: 'raw'; readonly servers: Servers; readonly topic: string; readonly group: string }
  | { readonly kind: 'naive'; readonly servers: Servers; readonly topic: string; readonly group: string; readonly targets: StoreTargets }
  | {
      readonly kind: 'router';
      readonly sinks: 'noop' | 'stores';
      readonly servers: Servers;
      readonly topic: string;
      readonly group: string;
      readonly targets: StoreTargets;
      /** Collect append-to-commit latencies (the open-loop run). */
      readonly latency: boolean;
    }
  | ViewsTask
  | {
      /** The latency floor (bench/mode-floor.ts): bare kafkajs and drivers into the three stores. */
      readonly kind: 'floor';
      readonly servers: Servers;
      readonly topic: string;
      readonly group: string;
      readonly targets: StoreTargets;
      /** The corpus seed of the stream's records (the rows written are generated from it). */
      readonly seed: number;
    }
  | {
      readonly kind: 'ceiling';
      readonly store: CeilingStore;
      readonly servers: Servers;
      readonly corpus: CorpusSpec;
      readonly targets: StoreTargets;
      readonly batch: number;
      readonly lanes: number;
    };

/** The views benchmark (bench/mode-views.ts): cdc-router on the views corpus, one variant per run. */
export interface ViewsTask {
  readonly kind: 'views';
  readonly variant: ViewsVariant;
  readonly servers: Servers;
  readonly topic: string;
  readonly group: string;
  /** The view's state schema; also the PostgreSQL output sink's schema. */
  readonly stateSchema: string;
  readonly latency: boolean;
}

export type ViewsVariant =
  | 'noop'
  | 'filter-map'
  | 'tumbling-5s'
  | 'hopping-30s-5s'
  | 'session-5m'
  | 'group-1k'
  | 'group-100k'
  | 'group-1M'
  | 'group-1k-pg';

export interface LatencyStats {
  readonly samples: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Append times (ms since epoch) of the records whose latencies count. */
export interface LatencyWindow {
  readonly fromMs: number;
  readonly toMs: number;
}

export type ParentMessage = { readonly type: 'start' } | { readonly type: 'stop'; readonly window?: LatencyWindow };

export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'started'; readonly at: number }
  | { readonly type: 'running' }
  | { readonly type: 'done'; readonly at: number; readonly cpuUs: number; readonly processed: number }
  | {
      readonly type: 'stopped';
      readonly at: number;
      readonly cpuUs: number;
      readonly processed: number;
      readonly latency?: LatencyStats;
    }
  | { readonly type: 'failed'; readonly message: string };

/** What a mode gives the worker: started by `start`, measured until the parent stops it (or `finished`). */
export interface ModeRunner {
  start(): Promise<void>;
  /** Resolves when the mode finished by itself (ceilings); undefined for consumers, which the parent stops. */
  readonly finished?: Promise<void>;
  /** Records or rows handled so far. */
  processed(): number;
  /** Stop, drain, and say what was measured beyond time and CPU. */
  stop(window: LatencyWindow | undefined): Promise<{ latency?: LatencyStats }>;
}
