import type pg from 'pg';
import { CdcError, SinkError, errorMessage } from '../errors.ts';
import { isUnavailable, type ChangeEvent, type ColumnSchema, type Row } from '../model/change-event.ts';
import { encodePosition } from '../model/position.ts';
import { keyString } from '../sink/coalesce.ts';
import { ViewInputError } from './core/errors.ts';
import { partitionKey, type GroupWrite, type StateStore, type StoredGroup, type StoredRow } from './state-store.ts';
import type { Contribution, ViewPlan } from './view-plan.ts';
import type { JsonValue } from './core/aggregation.ts';

/** A result as the outbox keeps it until the output sink has it. */
export interface ResultPayload {
  readonly op: 'c' | 'u' | 'd';
  readonly key: Row;
  readonly after: Row | null;
  readonly version: string;
  readonly tsMs: number;
  readonly columns: ColumnSchema[] | undefined;
}

export interface AppliedBatch {
  /** Input records that changed state (not redelivered, not stale). */
  readonly applied: number;
  /** Input records recognised as already applied by their offset (a redelivery). */
  readonly skipped: number;
  readonly results: readonly ResultPayload[];
  /** Records that cannot be applied, by batch index; they changed nothing. */
  readonly failures: ReadonlyMap<number, CdcError>;
}

interface WorkingGroup {
  key: Row;
  rows: number;
  state: Record<string, JsonValue>;
  readonly existed: boolean;
  touched: boolean;
}

/**
 * Partitions that must wait at a record (the new key of a primary-key change whose old key's delete,
 * on another partition, is not applied yet): that record and the partition's later ones are retried.
 * Two partitions never wait on each other: each waits for a change of a lower position than its own.
 */
type Held = Map<string, { readonly offset: bigint; readonly error: CdcError }>;

const partitionOf = (e: ChangeEvent) => partitionKey(e.kafka.topic, e.kafka.partition);

/** One input change turned into what it does to the view: contributions retracted and added. */
interface Delta {
  readonly index: number;
  readonly minus: readonly Contribution[];
  readonly plus: readonly Contribution[];
}

function asCdcError(view: string, err: unknown): CdcError {
  if (err instanceof CdcError) return err;
  return new ViewInputError('VIEW_INPUT', `view ${view}: ${errorMessage(err)}`);
}

/**
 * Applies one batch of a view's input inside the caller's transaction: redeliveries recognised by
 * the offsets stored per partition, stale changes by the positions stored per row; old
 * contributions from the stored image (never from `before`), new ones from the new image; groups
 * updated, results with fresh versions put in the outbox, offsets moved. Nothing is committed here.
 */
export async function applyBatch(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  batch: readonly ChangeEvent[],
  inputColumns: readonly ColumnSchema[] | undefined,
): Promise<AppliedBatch> {
  const view = plan.name;
  const failures = new Map<number, CdcError>();
  const partitions = new Map<string, { topic: string; partition: number }>();
  for (const e of batch) partitions.set(partitionKey(e.kafka.topic, e.kafka.partition), { topic: e.kafka.topic, partition: e.kafka.partition });
  const nextOffsets = await store.lockOffsets(client, view, [...partitions.values()]);
  const fresh: { index: number; event: ChangeEvent }[] = [];
  const moved = new Map<string, bigint>();
  batch.forEach((event, index) => {
    const pk = partitionKey(event.kafka.topic, event.kafka.partition);
    const offset = BigInt(event.kafka.offset);
    if (offset < (nextOffsets.get(pk) ?? 0n)) return;
    fresh.push({ index, event });
    const m = moved.get(pk);
    if (m === undefined || offset + 1n > m) moved.set(pk, offset + 1n);
  });

  const groups = new Map<string, WorkingGroup>();
  const held: Held = new Map();
  let applied = 0;
  // Segments end at truncates: a truncate retracts every row stored before it, including rows this batch changed.
  let start = 0;
  for (let i = 0; i <= fresh.length; i++) {
    const item = fresh[i];
    if (item !== undefined && item.event.op !== 't') continue;
    const segment = fresh.slice(start, i);
    const deltas = plan.mode === 'table' ? await tableDeltas(client, store, plan, segment, failures, held) : streamDeltas(plan, segment, failures);
    applied += await applyDeltas(client, store, plan, deltas, groups, failures);
    if (item !== undefined && plan.mode === 'table' && !held.has(partitionOf(item.event))) {
      applied += await truncate(client, store, plan, item.event, groups);
    }
    start = i + 1;
  }
  // A held partition's records from the one that waits on are not applied: they are retried, and its offset stops there.
  for (const { index, event } of fresh) {
    const h = held.get(partitionOf(event));
    if (h && BigInt(event.kafka.offset) >= h.offset) failures.set(index, h.error);
  }
  for (const [p, h] of held) moved.set(p, h.offset);

  const results = await finishGroups(client, store, plan, groups, inputColumns, batch);
  await store.saveOffsets(client, view, moved);
  return { applied, skipped: batch.length - fresh.length, results, failures };
}

async function tableDeltas(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  segment: readonly { index: number; event: ChangeEvent }[],
  failures: Map<number, CdcError>,
  held: Held,
): Promise<Delta[]> {
  if (segment.length === 0) return [];
  const rows = await store.lockRows(
    client,
    plan.name,
    segment.map((s) => keyString(s.event.key)),
  );
  const truncatedAt = await store.truncatePosition(client, plan.name);
  const changed = new Map<string, StoredRow>();
  const deltas: Delta[] = [];
  for (const { index, event } of segment) {
    if (held.has(partitionOf(event))) continue;
    try {
      if (event.key === null) {
        throw new ViewInputError('VIEW_NO_KEY', `view ${plan.name}: table ${event.table.id} has no key; a view reads a table by its primary key`);
      }
      const pk = keyString(event.key);
      const pos = encodePosition(event.position);
      const stored = changed.get(pk) ?? rows.get(pk) ?? { pos: null, image: null };
      if ((stored.pos !== null && stored.pos >= pos) || (truncatedAt !== null && truncatedAt >= pos)) continue;
      const row = event.op === 'd' ? null : event.after;
      let previous = stored.image;
      if (previous === null && row !== null && event.keyChange === 'new' && Object.values(row).some(isUnavailable)) {
        previous = await oldKeyImage(client, store, plan, segment, (k) => changed.get(k) ?? rows.get(k), pos);
      }
      const image = row === null ? null : plan.image(event, row, previous);
      const minus = stored.image === null ? [] : plan.contributions(stored.image);
      const plus = image === null ? [] : plan.contributions(image);
      validate(plan, plus);
      // The old key of a primary-key change keeps its image (an empty one when it had none) for the new key's create.
      changed.set(pk, { pos, image, moved: event.keyChange === 'old' ? (stored.image ?? {}) : null });
      deltas.push({ index, minus, plus });
    } catch (err) {
      if (err instanceof CdcError && err.retriable) held.set(partitionOf(event), { offset: BigInt(event.kafka.offset), error: err });
      else failures.set(index, asCdcError(plan.name, err));
    }
  }
  await store.saveRows(client, plan.name, changed);
  return deltas;
}

/**
 * The new key of a primary-key change: its unchanged TOASTed values come from the old key's image.
 * The old key's delete (same position) is in this batch, or was applied before (its image kept), or
 * is still to come on another partition: then the partition waits (see Held).
 */
async function oldKeyImage(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  segment: readonly { index: number; event: ChangeEvent }[],
  current: (pk: string) => StoredRow | undefined,
  pos: string,
): Promise<Row> {
  const inBatch = segment.find((s) => s.event.keyChange === 'old' && encodePosition(s.event.position) === pos);
  if (inBatch) {
    const old = current(keyString(inBatch.event.key));
    return old?.moved ?? old?.image ?? {};
  }
  const kept = await store.movedImage(client, plan.name, pos);
  if (kept) return kept;
  throw new SinkError(`view:${plan.name}`, `primary-key change at ${pos}: the delete of the old key (another partition) is not applied yet`, {
    code: 'VIEW_KEY_CHANGE_PENDING',
    retriable: true,
  });
}

function streamDeltas(plan: ViewPlan, segment: readonly { index: number; event: ChangeEvent }[], failures: Map<number, CdcError>): Delta[] {
  const deltas: Delta[] = [];
  for (const { index, event } of segment) {
    try {
      const row = event.after ?? event.before;
      if (row === null) continue;
      const plus = plan.contributions(plan.image(event, row, null));
      validate(plan, plus);
      deltas.push({ index, minus: [], plus });
    } catch (err) {
      failures.set(index, asCdcError(plan.name, err));
    }
  }
  return deltas;
}

/** A value an aggregation cannot take fails its record before anything is changed. */
function validate(plan: ViewPlan, contributions: readonly Contribution[]): void {
  const first = contributions[0];
  if (!first) return;
  plan.aggregations.forEach((a, i) => a.aggregator.add(a.aggregator.init(), first.values[i]));
}

async function loadGroups(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  gids: Iterable<string>,
  groups: Map<string, WorkingGroup>,
): Promise<void> {
  const missing = [...new Set(gids)].filter((g) => !groups.has(g));
  const loaded = await store.lockGroups(client, plan.name, missing);
  for (const gid of missing) {
    const g: StoredGroup | null = loaded.get(gid) ?? null;
    groups.set(gid, g ? { key: g.key, rows: g.rows, state: g.state, existed: true, touched: false } : { key: {}, rows: 0, state: {}, existed: false, touched: false });
  }
}

async function applyDeltas(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  deltas: readonly Delta[],
  groups: Map<string, WorkingGroup>,
  failures: Map<number, CdcError>,
): Promise<number> {
  await loadGroups(client, store, plan, deltas.flatMap((d) => [...d.minus, ...d.plus].map((c) => c.groupId)), groups);
  let applied = 0;
  for (const d of deltas) {
    try {
      for (const c of d.minus) contribute(plan, groups.get(c.groupId)!, c, -1);
      for (const c of d.plus) contribute(plan, groups.get(c.groupId)!, c, 1);
      applied++;
    } catch (err) {
      failures.set(d.index, asCdcError(plan.name, err));
    }
  }
  return applied;
}

function contribute(plan: ViewPlan, g: WorkingGroup, c: Contribution, sign: 1 | -1): void {
  if (g.rows === 0 && sign === 1) {
    g.key = c.groupKey;
    g.state = Object.fromEntries(plan.aggregations.map((a) => [a.name, a.aggregator.init()]));
  }
  plan.aggregations.forEach((a, i) => {
    const s = g.state[a.name] ?? a.aggregator.init();
    g.state[a.name] = sign === 1 ? a.aggregator.add(s, c.values[i]) : a.aggregator.subtract(s, c.values[i]);
  });
  g.rows += sign;
  g.touched = true;
}

/** Truncate: every row stored before it is retracted; rows newer than it (another partition's) stay. */
async function truncate(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  event: ChangeEvent,
  groups: Map<string, WorkingGroup>,
): Promise<number> {
  const pos = encodePosition(event.position);
  const truncatedAt = await store.truncatePosition(client, plan.name);
  if (truncatedAt !== null && truncatedAt >= pos) return 0;
  const rows = await store.lockAllRows(client, plan.name);
  const cleared = new Map<string, StoredRow>();
  const minus: Contribution[] = [];
  for (const [pk, r] of rows) {
    if (r.image === null || (r.pos !== null && r.pos > pos)) continue;
    minus.push(...plan.contributions(r.image));
    cleared.set(pk, { pos: r.pos, image: null });
  }
  await loadGroups(client, store, plan, minus.map((c) => c.groupId), groups);
  for (const c of minus) contribute(plan, groups.get(c.groupId)!, c, -1);
  await store.saveRows(client, plan.name, cleared);
  await store.saveTruncate(client, plan.name, pos);
  return 1;
}

function resultRow(plan: ViewPlan, g: WorkingGroup): Row {
  const row: Row = { ...g.key };
  for (const a of plan.aggregations) row[a.name] = a.aggregator.result(g.state[a.name] ?? a.aggregator.init());
  return row;
}

async function finishGroups(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  groups: ReadonlyMap<string, WorkingGroup>,
  inputColumns: readonly ColumnSchema[] | undefined,
  batch: readonly ChangeEvent[],
): Promise<ResultPayload[]> {
  const touched = [...groups].filter(([, g]) => g.touched && (g.rows > 0 || g.existed));
  const writes: GroupWrite[] = [...groups].filter(([, g]) => g.touched || !g.existed).map(([gid, g]) => ({ gid, key: g.key, rows: g.rows, state: g.state }));
  await store.saveGroups(client, plan.name, writes);
  const versions = await store.nextVersions(client, touched.length);
  const columns = plan.resultColumns(inputColumns);
  const last = batch[batch.length - 1];
  const tsMs = last?.source.tsMs ?? last?.kafka.timestamp ?? Date.now();
  const results = touched.map(([, g], i): ResultPayload => {
    const version = versions[i]!.toString();
    if (g.rows <= 0) return { op: 'd', key: g.key, after: null, version, tsMs, columns };
    return { op: g.existed ? 'u' : 'c', key: g.key, after: resultRow(plan, g), version, tsMs, columns };
  });
  await store.addToOutbox(client, plan.name, results);
  return results;
}
