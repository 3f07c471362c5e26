import type pg from 'pg';
import { CdcError, SinkError, errorMessage } from '../errors.ts';
import { isUnavailable, type ChangeEvent, type ColumnSchema, type Row } from '../model/change-event.ts';
import { encodePosition } from '../model/position.ts';
import { jsonWithBigints } from '../model/serialize.ts';
import { keyString } from '../sink/coalesce.ts';
import { ViewInputError } from './core/errors.ts';
import { ViewLateError } from './core/late.ts';
import { newTriggerState, triggerOnChange, triggerOnTime } from './core/trigger.ts';
import { applyKeyedWindows } from './keyed-windows.ts';
import { partitionKey, splitPartitionKey, type GroupWrite, type RowWrite, type StateStore, type StoredRow } from './state-store.ts';
import { KeyedStateStore } from './keyed-state-store.ts';
import { ProcessBatch, type ResultDraft } from './process.ts';
import type { JsonValue } from './core/aggregation.ts';
import { heartbeat, setCaughtUp, type PartitionClock } from './core/watermark.ts';
import { KEYED_WINDOW_KINDS, rowKeyOf, truncateScope, windowCloseOf, type Contribution, type ViewPlan } from './view-plan.ts';
import { workingGroup, type Delta, type WorkingGroup } from './working-group.ts';
import { advanceClocks, rejectLate, watermarkOf } from './event-clock.ts';

/** A result of a state transaction: written in it by its sink, or kept in the outbox until the sink has it. */
export interface ResultPayload {
  /** Where it goes: the view's output (default), or its late side output. */
  readonly target?: 'late';
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
  /** The output's results and the late side output's changes, for the caller to put where they go in the same transaction. */
  readonly results: readonly ResultPayload[];
  /** Records that cannot be applied, by batch index; they changed nothing. */
  readonly failures: ReadonlyMap<number, CdcError>;
  /** Changes too late for their window: in `failures` (to the dead-letter queue), or written to the view's late sink. */
  readonly late: number;
}


/**
 * Partitions that must wait at a record (the new key of a primary-key change whose old key's delete,
 * on another partition, is not applied yet): that record and the partition's later ones are retried.
 * Two partitions never wait on each other: each waits for a change of a lower position than its own.
 */
type Held = Map<string, { readonly offset: bigint; readonly error: CdcError }>;

const partitionOf = (e: ChangeEvent) => partitionKey(e.kafka.topic, e.kafka.partition);


function asCdcError(view: string, err: unknown): CdcError {
  if (err instanceof CdcError) return err;
  return new ViewInputError('VIEW_INPUT', `view ${view}: ${errorMessage(err)}`);
}

/**
 * Applies one batch of a view's input inside the caller's transaction: redeliveries recognised by
 * the offsets stored per partition, stale changes by the positions stored per row; old
 * contributions from the stored image (never from `before`), new ones from the new image; groups
 * updated, results with fresh versions returned, offsets moved. Nothing is committed here.
 * `waiting`: input partitions with records still to read (see watermarkOf).
 */
export async function applyBatch(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  batch: readonly ChangeEvent[],
  inputColumns: readonly ColumnSchema[] | undefined,
  waiting: ReadonlySet<string> = new Set(),
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
  // A process view keeps keyed state instead of groups.
  const keyed = plan.process ? await ProcessBatch.open(client, new KeyedStateStore(store.s), plan) : undefined;
  const held: Held = new Map();
  const watermark = plan.window ? await store.watermark(client, view) : null;
  let applied = 0;
  if (plan.mode === 'stream') {
    // A stream retracts nothing, truncates included: the batch is one segment.
    const deltas = streamDeltas(plan, fresh, failures, watermark);
    applied += keyed
      ? await keyed.apply(deltas, (index) => batch[index]!, failures)
      : plan.window && KEYED_WINDOW_KINDS.has(plan.window.kind)
        ? await applyKeyedWindows(client, store, plan, deltas, groups, failures, watermark)
        : await applyDeltas(client, store, plan, deltas, groups, failures);
  }
  // Segments end at truncates: a truncate retracts every row stored before it, including rows this batch changed.
  // A process function can throw: there a segment also ends before a row's second change, so that change
  // retracts the image the first one left only when the first was applied.
  let start = 0;
  let segmentRows = new Set<string>();
  for (let i = 0; i <= fresh.length && plan.mode === 'table'; i++) {
    const item = fresh[i];
    const pk = item?.event.key ? rowKeyOf(plan, item.event, keyString(item.event.key)) : undefined;
    const repeat = keyed !== undefined && pk !== undefined && segmentRows.has(pk);
    if (item !== undefined && item.event.op !== 't' && !repeat) {
      if (pk !== undefined) segmentRows.add(pk);
      continue;
    }
    const segment = fresh.slice(start, i);
    const { deltas, rows, stored } = await tableDeltas(client, store, plan, segment, failures, held, watermark);
    // Images are saved before any group is locked: a row belongs to one partition, a group to every
    // transaction, so groups stay locked (until the commit) for group work only.
    await store.saveRows(client, plan.name, new Map([...rows].map(([k, r]) => [k, { ...r.row, moved: null }])));
    applied += keyed
      ? await keyed.apply(deltas, (index) => batch[index]!, failures)
      : await applyDeltas(client, store, plan, deltas, groups, failures);
    await settleRows(client, store, plan, rows, stored, failures);
    segmentRows = new Set(repeat ? [pk!] : []);
    if (repeat) {
      start = i;
      continue;
    }
    if (item !== undefined && !held.has(partitionOf(item.event))) {
      applied += await truncate(client, store, plan, item, groups, keyed, failures);
    }
    start = i + 1;
  }
  // A held partition's records from the one that waits on are not applied: they are retried, and its offset stops there.
  for (const { index, event } of fresh) {
    const h = held.get(partitionOf(event));
    if (h && BigInt(event.kafka.offset) >= h.offset) failures.set(index, h.error);
  }
  for (const [p, h] of held) moved.set(p, h.offset);

  let newWatermark = watermark;
  if (plan.window) {
    const now = Date.now();
    const stored = await store.clocks(client, view);
    const read = fresh.filter((f) => !held.has(partitionOf(f.event)) || BigInt(f.event.kafka.offset) < held.get(partitionOf(f.event))!.offset);
    const clocks = advanceClocks(plan, stored, read.map((f) => ({ event: f.event, applied: !failures.has(f.index) })), now);
    await store.saveClocks(client, view, clocks);
    newWatermark = watermarkOf(plan, stored, clocks, watermark, now, waiting);
    if (newWatermark !== null && newWatermark !== watermark) await store.saveWatermark(client, view, newWatermark);
  }
  const late = [...failures].filter((f): f is [number, ViewLateError] => f[1] instanceof ViewLateError);
  const lateVersions = plan.late ? late.length : 0;
  let results: ResultPayload[];
  let versions: readonly bigint[];
  if (keyed) {
    results = await keyedResults(client, store, await keyed.finish(), batch);
    versions = await store.nextVersions(client, lateVersions);
    await store.saveOffsets(client, view, moved);
  } else {
    ({ results, versions } = await finishGroups(client, store, plan, groups, inputColumns, batch, newWatermark, { offsets: moved, versions: lateVersions }));
  }
  if (plan.late && late.length > 0) {
    results.push(...late.map(([index, error], i) => latePayload(plan, batch[index]!, error, versions[i]!.toString())));
    for (const [index] of late) failures.delete(index);
  }
  return { applied, skipped: batch.length - fresh.length, results, failures, late: late.length };
}

/**
 * A late change as its side output gets it: keyed by where it was read (one row per input record,
 * so a second delivery rewrites the same row), with the reason, the window and the watermark.
 */
function latePayload(plan: ViewPlan, event: ChangeEvent, error: ViewLateError, version: string): ResultPayload {
  const key: Row = { view: plan.name, topic: event.kafka.topic, kafka_partition: event.kafka.partition, kafka_offset: event.kafka.offset };
  const after: Row = {
    ...key,
    reason: error.message,
    op: event.op,
    event_time_ms: error.eventMs,
    window_start: error.window.start,
    window_end: error.window.end,
    watermark_ms: error.watermarkMs,
    change: jsonWithBigints(event.after ?? event.before) ?? null,
  };
  return { target: 'late', op: 'c', key, after, version, tsMs: event.source.tsMs ?? event.kafka.timestamp, columns: undefined };
}

async function tableDeltas(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  segment: readonly { index: number; event: ChangeEvent }[],
  failures: Map<number, CdcError>,
  held: Held,
  watermark: number | null,
): Promise<{ deltas: Delta[]; rows: Map<string, { row: RowWrite; index: number }>; stored: ReadonlyMap<string, StoredRow> }> {
  const written = new Map<string, { row: RowWrite; index: number }>();
  if (segment.length === 0) return { deltas: [], rows: written, stored: new Map() };
  const scopes = new Map([...new Set(segment.map((s) => s.event.table.id))].map((table) => [table, truncateScope(plan, table)]));
  const locked = await store.lockRowsOf(
    client,
    plan.name,
    segment.map((s) => rowKeyOf(plan, s.event, keyString(s.event.key))),
    [...scopes.values()],
  );
  const rows = locked.rows;
  const truncates = new Map([...scopes].map(([table, scope]) => [table, locked.truncates.get(scope) ?? null]));
  const changed = (pk: string) => written.get(pk)?.row ?? rows.get(pk);
  const deltas: Delta[] = [];
  for (const { index, event } of segment) {
    if (held.has(partitionOf(event))) continue;
    try {
      if (event.key === null) {
        throw new ViewInputError('VIEW_NO_KEY', `view ${plan.name}: table ${event.table.id} has no key; a view reads a table by its primary key`);
      }
      const pk = rowKeyOf(plan, event, keyString(event.key));
      const pos = encodePosition(event.position);
      const stored = changed(pk) ?? { pos: null, image: null };
      const truncatedAt = truncates.get(event.table.id) ?? null;
      if ((stored.pos !== null && stored.pos >= pos) || (truncatedAt !== null && truncatedAt >= pos)) continue;
      const row = event.op === 'd' ? null : event.after;
      let previous = stored.image;
      if (previous === null && row !== null && event.keyChange === 'new' && Object.values(row).some(isUnavailable)) {
        previous = await oldKeyImage(client, store, plan, segment, changed, pos);
      }
      const image = row === null ? null : plan.image(event, row, previous);
      const minus = stored.image === null ? [] : plan.contributions(stored.image, 'retract');
      const plus = image === null ? [] : plan.contributions(image, 'add');
      validate(plan, plus);
      rejectLate(plan, event, watermark, minus, plus);
      // The old key of a primary-key change keeps its image (an empty one when it had none) for the new key's create.
      written.set(pk, { row: { pos, image, moved: event.keyChange === 'old' ? (stored.image ?? {}) : null, existed: rows.has(pk) }, index });
      deltas.push({ index, minus, plus });
    } catch (err) {
      if (err instanceof CdcError && err.retriable) held.set(partitionOf(event), { offset: BigInt(event.kafka.offset), error: err });
      else failures.set(index, asCdcError(plan.name, err));
    }
  }
  // Saved by the caller; those of changes that fail when applied are put back (settleRows).
  return { deltas, rows: written, stored: rows };
}

/**
 * After a segment's deltas are applied: a row whose change failed there gets its stored image and
 * position back (or none, as it had), and old keys of primary-key changes that did apply keep their image.
 */
async function settleRows(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  rows: ReadonlyMap<string, { row: RowWrite; index: number }>,
  stored: ReadonlyMap<string, StoredRow>,
  failures: ReadonlyMap<number, CdcError>,
): Promise<void> {
  const settled = new Map<string, RowWrite>();
  for (const [pk, { row, index }] of rows) {
    const before = stored.get(pk);
    if (failures.has(index)) settled.set(pk, { pos: before?.pos ?? null, image: before?.image ?? null, existed: true });
    else if (row.moved) settled.set(pk, { ...row, existed: true });
  }
  await store.saveRows(client, plan.name, settled);
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
    const old = current(rowKeyOf(plan, inBatch.event, keyString(inBatch.event.key)));
    return old?.moved ?? old?.image ?? {};
  }
  const kept = await store.movedImage(client, plan.name, pos);
  if (kept) return kept;
  throw new SinkError(`view:${plan.name}`, `primary-key change at ${pos}: the delete of the old key (another partition) is not applied yet`, {
    code: 'VIEW_KEY_CHANGE_PENDING',
    retriable: true,
  });
}

function streamDeltas(
  plan: ViewPlan,
  segment: readonly { index: number; event: ChangeEvent }[],
  failures: Map<number, CdcError>,
  watermark: number | null,
): Delta[] {
  const deltas: Delta[] = [];
  for (const { index, event } of segment) {
    try {
      const row = event.after ?? event.before;
      if (row === null) continue;
      const plus = plan.contributions(plan.image(event, row, null), 'add');
      validate(plan, plus);
      rejectLate(plan, event, watermark, plus);
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
  contributions: Iterable<Contribution>,
  groups: Map<string, WorkingGroup>,
): Promise<void> {
  const ends = new Map<string, number | undefined>();
  for (const c of contributions) if (!groups.has(c.groupId)) ends.set(c.groupId, windowCloseOf(plan, c.groupKey));
  const missing = [...ends.keys()];
  const loaded = await store.lockGroups(client, plan.name, missing, ends);
  for (const gid of missing) groups.set(gid, workingGroup(loaded.get(gid) ?? null));
}

async function applyDeltas(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  deltas: readonly Delta[],
  groups: Map<string, WorkingGroup>,
  failures: Map<number, CdcError>,
): Promise<number> {
  await loadGroups(client, store, plan, deltas.flatMap((d) => [...d.minus, ...d.plus]), groups);
  if (applyAtOnce(plan, deltas, groups) === undefined) {
    countChanges(deltas, groups);
    return deltas.length;
  }
  // A change throws: one delta at a time, each all or nothing, so that only the records at fault fail.
  let applied = 0;
  for (const d of deltas) {
    const err = applyAtOnce(plan, [d], groups);
    if (err !== undefined) failures.set(d.index, asCdcError(plan.name, err));
    else {
      countChanges([d], groups);
      applied++;
    }
  }
  return applied;
}

/** Input changes per group (a global window's count trigger counts them). */
function countChanges(deltas: readonly Delta[], groups: Map<string, WorkingGroup>): void {
  for (const d of deltas) for (const gid of new Set([...d.minus, ...d.plus].map((c) => c.groupId))) groups.get(gid)!.changes++;
}

/**
 * The deltas applied group by group, each aggregation taking a group's changes at once (see
 * Aggregator.applyAll): the same states as applying them change by change, for a copy per group
 * and batch instead of per change. All or nothing: when a change throws, the groups stay as they
 * were and the error is returned.
 */
function applyAtOnce(plan: ViewPlan, deltas: readonly Delta[], groups: Map<string, WorkingGroup>): unknown {
  const byGroup = new Map<string, { c: Contribution; sign: 1 | -1 }[]>();
  const add = (c: Contribution, sign: 1 | -1) => {
    let list = byGroup.get(c.groupId);
    if (!list) byGroup.set(c.groupId, (list = []));
    list.push({ c, sign });
  };
  for (const d of deltas) {
    for (const c of d.minus) add(c, -1);
    for (const c of d.plus) add(c, 1);
  }
  const next = new Map<string, Pick<WorkingGroup, 'key' | 'rows' | 'state'>>();
  try {
    for (const [gid, list] of byGroup) next.set(gid, foldGroup(plan, groups.get(gid)!, list));
  } catch (err) {
    return err ?? new Error('aggregation threw');
  }
  for (const [gid, n] of next) Object.assign(groups.get(gid)!, n, { touched: true });
  return undefined;
}

/** One group's changes in order, into a new state record; a group that empties and gets a row again starts from init (its key too). */
function foldGroup(plan: ViewPlan, g: WorkingGroup, list: readonly { c: Contribution; sign: 1 | -1 }[]): Pick<WorkingGroup, 'key' | 'rows' | 'state'> {
  let { key, rows } = g;
  let state = { ...g.state };
  let run: { c: Contribution; sign: 1 | -1 }[] = [];
  const flush = () => {
    plan.aggregations.forEach((a, i) => {
      const s = state[a.name] ?? a.aggregator.init();
      const agg = a.aggregator;
      state[a.name] = agg.applyAll
        ? agg.applyAll(s, run.map((r) => [r.c.values[i], r.sign] as const))
        : run.reduce((acc, r) => (r.sign === 1 ? agg.add(acc, r.c.values[i]) : agg.subtract(acc, r.c.values[i])), s);
    });
    run = [];
  };
  for (const item of list) {
    if (rows === 0 && item.sign === 1) {
      flush();
      key = item.c.groupKey;
      state = Object.fromEntries(plan.aggregations.map((a) => [a.name, a.aggregator.init()]));
    }
    run.push(item);
    rows += item.sign;
  }
  flush();
  return { key, rows, state };
}

/** Truncate: every row stored before it is retracted; rows newer than it (another partition's) stay. */
async function truncate(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  { index, event }: { index: number; event: ChangeEvent },
  groups: Map<string, WorkingGroup>,
  keyed: ProcessBatch | undefined,
  failures: Map<number, CdcError>,
): Promise<number> {
  const pos = encodePosition(event.position);
  const scope = truncateScope(plan, event.table.id);
  const truncatedAt = await store.truncatePosition(client, scope);
  if (truncatedAt !== null && truncatedAt >= pos) return 0;
  const rows = await store.lockAllRows(client, plan.name);
  const cleared = new Map<string, RowWrite>();
  const minus: Contribution[] = [];
  // A merged view's truncate retracts the rows of its own table only.
  const ofTable = (pk: string) => plan.inputs.length === 1 || pk.startsWith(rowKeyOf(plan, event, ''));
  for (const [pk, r] of rows) {
    if (r.image === null || (r.pos !== null && r.pos > pos) || !ofTable(pk)) continue;
    minus.push(...plan.contributions(r.image, 'retract'));
    cleared.set(pk, { pos: r.pos, image: null, existed: true });
  }
  if (keyed) {
    if ((await keyed.apply([{ index, minus, plus: [] }], () => event, failures)) === 0) return 0;
  } else {
    await loadGroups(client, store, plan, minus, groups);
    const err = applyAtOnce(plan, [{ index, minus, plus: [] }], groups);
    if (err !== undefined) throw asCdcError(plan.name, err);
  }
  await store.saveRows(client, plan.name, cleared);
  await store.saveTruncate(client, scope, pos);
  return 1;
}

/** A process view's results, with fresh versions. */
async function keyedResults(client: pg.PoolClient, store: StateStore, drafts: readonly ResultDraft[], batch: readonly ChangeEvent[]): Promise<ResultPayload[]> {
  const versions = await store.nextVersions(client, drafts.length);
  const last = batch[batch.length - 1];
  const tsMs = last?.source.tsMs ?? last?.kafka.timestamp ?? Date.now();
  return drafts.map((d, i): ResultPayload => ({ ...d, version: versions[i]!.toString(), tsMs, columns: undefined }));
}

/** The group's key in the plan's column order, whatever order jsonb gave it back in. */
function resultKey(plan: ViewPlan, g: WorkingGroup): Row {
  return Object.fromEntries(plan.keyColumns.map((c) => [c, g.key[c] ?? null]));
}

function resultRow(plan: ViewPlan, g: WorkingGroup): Row {
  const row: Row = resultKey(plan, g);
  for (const a of plan.aggregations) row[a.name] = a.aggregator.result(g.state[a.name] ?? a.aggregator.init());
  return row;
}

/**
 * Which groups' results a batch writes. emit updates: every group it changed. emit final: a
 * window's groups once the watermark has passed its end (changed by this batch or not), then
 * corrections within grace; a group whose window never fired is never written, not even deleted.
 * A global window: when its trigger fires; a delete of an emitted group at once.
 */
async function emittedGroups(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  groups: Map<string, WorkingGroup>,
  watermarkMs: number | null,
): Promise<[string, WorkingGroup][]> {
  if (plan.trigger) return fireTriggers(client, store, plan, groups, watermarkMs);
  if (plan.time.emit !== 'final') return [...groups].filter(([, g]) => g.touched && (g.rows > 0 || g.existed));
  if (watermarkMs !== null) {
    for (const [gid, g] of await store.lockDueGroups(client, plan.name, watermarkMs)) {
      if (!groups.has(gid)) groups.set(gid, workingGroup(g));
    }
  }
  const due = (g: WorkingGroup) => {
    const close = windowCloseOf(plan, g.key);
    return close !== undefined && watermarkMs !== null && close <= watermarkMs;
  };
  const emitted = [...groups].filter(([, g]) => {
    if (g.rows <= 0) return g.touched && g.fired;
    return (g.touched || !g.fired) && due(g);
  });
  for (const [, g] of emitted) if (g.rows > 0) g.fired = true;
  return emitted;
}

/** A global window's trigger: counts the changes of each group, and (time) fires once per interval of the watermark. */
async function fireTriggers(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  groups: Map<string, WorkingGroup>,
  watermarkMs: number | null,
): Promise<[string, WorkingGroup][]> {
  const trigger = plan.trigger!;
  if (trigger.kind === 'time' && watermarkMs !== null) {
    for (const [gid, g] of await store.lockPendingTriggers(client, plan.name)) if (!groups.has(gid)) groups.set(gid, workingGroup(g));
  }
  const emitted: [string, WorkingGroup][] = [];
  for (const [gid, g] of groups) {
    if (g.rows <= 0) {
      if (g.touched && g.fired) emitted.push([gid, g]);
      g.trigger = null;
      continue;
    }
    let state = g.trigger ?? newTriggerState();
    let fire = false;
    for (let i = 0; i < g.changes; i++) {
      const step = triggerOnChange(trigger, state);
      state = step.state;
      fire ||= step.fire;
    }
    if (watermarkMs !== null) {
      const step = triggerOnTime(trigger, state, watermarkMs);
      state = step.state;
      fire ||= step.fire;
    }
    g.trigger = state;
    if (fire) {
      g.fired = true;
      emitted.push([gid, g]);
    }
  }
  return emitted;
}

/**
 * Results of the groups this batch changed (see emittedGroups), with fresh versions. `extra`: the
 * partitions' next offsets to save with the groups, and how many more versions to take after the
 * results' (returned as `versions`).
 */
async function finishGroups(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  groups: Map<string, WorkingGroup>,
  inputColumns: readonly ColumnSchema[] | undefined,
  batch: readonly ChangeEvent[],
  watermarkMs: number | null,
  extra: { readonly offsets?: ReadonlyMap<string, bigint>; readonly versions?: number } = {},
): Promise<{ results: ResultPayload[]; versions: readonly bigint[] }> {
  const emitted = await emittedGroups(client, store, plan, groups, watermarkMs);
  const written = new Set(emitted.map(([, g]) => g));
  const writes: GroupWrite[] = [...groups]
    .filter(([, g]) => g.touched || !g.existed || written.has(g))
    .map(([gid, g]) => ({
      gid,
      key: g.key,
      rows: g.rows,
      state: g.state,
      windowEnd: windowCloseOf(plan, g.key),
      fired: g.fired,
      kid: g.kid,
      windowStart: g.windowStart,
      trigger: g.trigger,
    }));
  const versions = await store.saveGroups(client, plan.name, writes, { offsets: extra.offsets, versions: emitted.length + (extra.versions ?? 0) });
  const columns = plan.resultColumns(inputColumns);
  const last = batch[batch.length - 1];
  const tsMs = last?.source.tsMs ?? last?.kafka.timestamp ?? Date.now();
  const results = emitted.map(([, g], i): ResultPayload => {
    const version = versions[i]!.toString();
    if (g.rows <= 0) return { op: 'd', key: resultKey(plan, g), after: null, version, tsMs, columns };
    return { op: g.existed ? 'u' : 'c', key: resultKey(plan, g), after: resultRow(plan, g), version, tsMs, columns };
  });
  return { results, versions: versions.slice(emitted.length) };
}

/** A Debezium heartbeat of the connector writing the topics `<topicPrefix>.*`, with those partitions' end offsets fetched after it was read. */
export interface HeartbeatTick {
  readonly topicPrefix: string;
  readonly tsMs: number;
  readonly ends: ReadonlyMap<string, bigint>;
}

/**
 * A heartbeat moves the clocks of the view's partitions of that connector: a partition applied to
 * its end (its stored next offset at the end offset fetched after the heartbeat was read) has no
 * change older than the heartbeat still to come, so the heartbeat counts as its time; one still
 * behind keeps its clock (its unread changes must not become late).
 */
async function beatClocks(client: pg.PoolClient, store: StateStore, plan: ViewPlan, stored: ReadonlyMap<string, JsonValue>, beat: HeartbeatTick) {
  const moved = new Map<string, PartitionClock>();
  const mine = [...stored.keys()].filter((p) => splitPartitionKey(p).topic.startsWith(`${beat.topicPrefix}.`));
  if (mine.length === 0) return moved;
  const next = await store.lockOffsets(client, plan.name, mine.map(splitPartitionKey));
  for (const p of mine) {
    const end = beat.ends.get(p);
    const caughtUp = end !== undefined && (next.get(p) ?? 0n) >= end;
    const clock = stored.get(p) as unknown as PartitionClock;
    moved.set(p, caughtUp ? setCaughtUp(heartbeat(clock, Math.floor(beat.tsMs)), true) : setCaughtUp(clock, false));
  }
  await store.saveClocks(client, plan.name, moved);
  return moved;
}

/**
 * Time moves without input too: a partition read to its end and idle stops holding the watermark
 * back, and a Debezium heartbeat moves the partitions it vouches for. Run now and then (the
 * relay's tick) and on each heartbeat: moves the watermark from the stored clocks and, with emit:
 * final or a time trigger, emits the windows it closed. Returns their results, for the caller to put
 * where they go in the same transaction.
 */
export async function advanceTime(
  client: pg.PoolClient,
  store: StateStore,
  plan: ViewPlan,
  inputColumns: readonly ColumnSchema[] | undefined,
  beat?: HeartbeatTick,
  waiting: ReadonlySet<string> = new Set(),
): Promise<ResultPayload[]> {
  if (!plan.window) return [];
  const previous = await store.watermark(client, plan.name);
  const stored = await store.clocks(client, plan.name);
  const moved = beat ? await beatClocks(client, store, plan, stored, beat) : new Map<string, PartitionClock>();
  const watermark = watermarkOf(plan, stored, moved, previous, Date.now(), waiting);
  if (watermark === null) return [];
  if (watermark !== previous) await store.saveWatermark(client, plan.name, watermark);
  if (plan.time.emit !== 'final' && plan.trigger?.kind !== 'time') return [];
  return (await finishGroups(client, store, plan, new Map(), inputColumns, [], watermark)).results;
}
