import type pg from 'pg';
import { CdcError, errorMessage } from '../errors.ts';
import type { ChangeEvent, Row } from '../model/change-event.ts';
import { ViewInputError } from './core/errors.ts';
import { eventTimeMs } from './core/event-time.ts';
import { expiresAt, KeyedState, type ProcessDefinition } from './keyed-state.ts';
import type { KeyedStateStore } from './keyed-state-store.ts';
import { userCall, type Contribution, type ViewPlan } from './view-plan.ts';

/** One input change as the view sees it: the contributions it retracts and adds. */
export interface ProcessDelta {
  readonly index: number;
  readonly minus: readonly Contribution[];
  readonly plus: readonly Contribution[];
}

/** A result of a process view before it gets its version: an upsert or a delete of one key's row. */
export interface ResultDraft {
  readonly op: 'c' | 'u' | 'd';
  readonly key: Row;
  readonly after: Row | null;
}

interface WorkingKey {
  key: Row;
  state: KeyedState;
  hasResult: boolean;
  /** What the batch's calls left: a row, null (delete), undefined (unchanged). */
  result: Row | null | undefined;
}

/**
 * A batch of a `process` view inside the caller's transaction: the keys its changes touch are locked
 * in order, each change runs the user's function once per contribution (retractions first), with the
 * key's state handles; the state, the stream time and the results are written by `finish`. A change
 * whose function throws leaves its keys as they were and fails its record alone.
 */
export class ProcessBatch {
  private readonly keys = new Map<string, WorkingKey>();
  private readonly def: ProcessDefinition;
  private streamTimeMs: number | null = null;
  private storedStreamTimeMs: number | null = null;

  private constructor(
    private readonly client: pg.PoolClient,
    private readonly store: KeyedStateStore,
    private readonly plan: ViewPlan,
  ) {
    this.def = plan.process!;
  }

  static async open(client: pg.PoolClient, store: KeyedStateStore, plan: ViewPlan): Promise<ProcessBatch> {
    const batch = new ProcessBatch(client, store, plan);
    batch.storedStreamTimeMs = await store.streamTime(client, plan.name);
    batch.streamTimeMs = batch.storedStreamTimeMs;
    return batch;
  }

  /** The TTL's clock: the stream time (event time), or now. */
  private now(): number {
    if (this.def.ttl?.clock === 'wall_clock') return Date.now();
    return this.streamTimeMs ?? Number.NEGATIVE_INFINITY;
  }

  /** Applies the deltas (each the change of `eventOf(index)`); failures by index. Returns how many were applied. */
  async apply(deltas: readonly ProcessDelta[], eventOf: (index: number) => ChangeEvent, failures: Map<number, CdcError>): Promise<number> {
    const missing = [...new Set(deltas.flatMap((d) => [...d.minus, ...d.plus].map((c) => c.groupId)))].filter((g) => !this.keys.has(g));
    for (const [gid, k] of await this.store.lock(this.client, this.plan.name, missing)) {
      this.keys.set(gid, { key: k.key, state: new KeyedState(this.def.state, this.def.ttl, k.state), hasResult: k.hasResult, result: undefined });
    }
    let applied = 0;
    for (const d of deltas) {
      const touched = [...new Set([...d.minus, ...d.plus].map((c) => c.groupId))];
      const before = touched.map((gid) => [gid, this.snapshot(gid)] as const);
      const streamBefore = this.streamTimeMs;
      try {
        const timeMs = this.timeOf(eventOf(d.index), d);
        this.streamTimeMs = Math.max(this.streamTimeMs ?? timeMs, timeMs);
        for (const c of d.minus) this.call(c, 'retract', timeMs);
        for (const c of d.plus) this.call(c, 'add', timeMs);
        applied++;
      } catch (err) {
        for (const [gid, w] of before) this.keys.set(gid, w);
        this.streamTimeMs = streamBefore;
        failures.set(d.index, err instanceof CdcError ? err : new ViewInputError('VIEW_INPUT', `view ${this.plan.name}: ${errorMessage(err)}`));
      }
    }
    return applied;
  }

  private snapshot(gid: string): WorkingKey {
    const w = this.keys.get(gid)!;
    return { ...w, key: { ...w.key }, state: new KeyedState(this.def.state, this.def.ttl, structuredClone(w.state.toStored(Number.NEGATIVE_INFINITY))) };
  }

  /** Event time of a change: its eventTime column (the new row's, else the old one's), or its commit time. */
  private timeOf(event: ChangeEvent, d: ProcessDelta): number {
    const commitMs = event.source.tsMs ?? event.tsMs ?? event.kafka.timestamp;
    const column = this.plan.eventTime;
    const row = d.plus[0]?.row ?? d.minus[0]?.row;
    if (column === undefined || row === undefined || event.op === 't') return commitMs;
    const t = eventTimeMs(row[column]);
    if (t === undefined) throw new ViewInputError('VIEW_NOT_A_TIME', `view ${this.plan.name}: event time column ${column} holds ${JSON.stringify(row[column] ?? null)}, not a time`);
    return t;
  }

  private call(c: Contribution, change: 'add' | 'retract', timeMs: number): void {
    const w = this.keys.get(c.groupId)!;
    if (Object.keys(w.key).length === 0) w.key = c.groupKey;
    const state = w.state.handles(() => this.now());
    const out = userCall(this.plan.name, 'process', () => this.def.fn(c.row ?? {}, { key: c.groupKey, change, timeMs, state }));
    if (out !== undefined) w.result = out;
  }

  /** Saves every key's state (expired entries dropped), the stream time, sweeps expired keys; returns the results. */
  async finish(): Promise<ResultDraft[]> {
    const now = this.now();
    const drafts: ResultDraft[] = [];
    const writes = [...this.keys].map(([gid, w]) => {
      const key = Object.fromEntries(this.plan.keyColumns.map((c) => [c, w.key[c] ?? null]));
      if (w.result === null && w.hasResult) {
        drafts.push({ op: 'd', key, after: null });
        w.hasResult = false;
      } else if (w.result) {
        drafts.push({ op: w.hasResult ? 'u' : 'c', key, after: { ...key, ...w.result, ...key } });
        w.hasResult = true;
      }
      const state = w.state.toStored(now);
      return { gid, key: w.key, state, hasResult: w.hasResult, expiresAt: this.def.ttl ? expiresAt(state) : expiresAt(state) === undefined ? undefined : null };
    });
    await this.store.save(this.client, this.plan.name, writes);
    if (this.streamTimeMs !== null && this.streamTimeMs !== this.storedStreamTimeMs) await this.store.saveStreamTime(this.client, this.plan.name, this.streamTimeMs);
    if (this.def.ttl && Number.isFinite(now)) await this.store.sweep(this.client, this.plan.name, now);
    return drafts;
  }
}
