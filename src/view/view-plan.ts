import { isUnavailable, type ChangeEvent, type ColumnSchema, type Row, type TableId } from '../model/change-event.ts';
import { jsonWithBigints } from '../model/serialize.ts';
import type { AggregationKind } from './core/aggregation.ts';
import { createAggregator, type AnyAggregator } from './core/aggregations/index.ts';
import { ViewInputError, ViewSpecError } from './core/errors.ts';
import { eventTimeMs } from './core/event-time.ts';
import { validateTrigger, type GlobalTrigger } from './core/trigger.ts';
import { assignWindows, GLOBAL_WINDOW, lastEventMs, validateWindowSpec, type TimeWindow, type WindowSpec } from './core/windows.ts';
import type { ViewConfig } from './view-config.ts';
import type { ProcessDefinition } from './keyed-state.ts';

/** Column of a stored image holding the change's commit time, when that is the event time. */
export const COMMIT_TIME_COLUMN = '__cdc_commit_ms';
/** Column of a stored image of a merged view (several input tables) naming the image's table. */
export const TABLE_COLUMN = '__cdc_table';

/**
 * What the rows function is told: the image's input table (a merged view has several), and whether
 * its rows are being added or retracted (undefined when only read, for its event time). peek sees it.
 */
export interface RowsContext {
  readonly table: string;
  readonly observe: 'add' | 'retract' | undefined;
}

export interface PlannedAggregation {
  readonly name: string;
  readonly fn: AggregationKind;
  /** The column aggregated; undefined: count(*), or a custom aggregation given the whole row. */
  readonly column: string | undefined;
  readonly aggregator: AnyAggregator;
}

/**
 * A view as planView compiles it, whichever way it was written: the config file's `views:` (see
 * definitionFromConfig) or the TypeScript API (src/view/dsl.ts).
 */
export interface ViewDefinition {
  readonly input: string;
  /** Every input table of a merged view (`merge`), `input` first; undefined: `input` only. */
  readonly inputs?: readonly string[] | undefined;
  readonly mode: 'table' | 'stream';
  /**
   * The input columns the filter reads. Undefined when a filter or map is a function, which may read
   * any column: images then keep the whole row.
   */
  readonly reads: readonly string[] | undefined;
  readonly filter: ((row: Readonly<Row>) => boolean) | undefined;
  /**
   * Applied to each image (after the filter) before grouping: the rows it gives the view (none drops
   * it, several are each grouped: flatMap). Pure: a table's stored image goes through it again when
   * an update or delete retracts it, and must give what it gave. `sameColumns`: the rows are the
   * image's rows (filters only), so results keep the input's column schemas.
   */
  readonly rows?: { readonly fn: (row: Readonly<Row>, context: RowsContext) => readonly Row[]; readonly sameColumns: boolean } | undefined;
  /** A `process` operator with keyed state instead of aggregations (groupBy columns key its state and results). */
  readonly process?: ProcessDefinition | undefined;
  /** Columns of the (mapped) row. */
  readonly groupBy: readonly string[];
  readonly aggregations: readonly PlannedAggregation[];
  readonly window: WindowSpec | undefined;
  /** A column of the (mapped) row; undefined: the commit time. */
  readonly eventTime: string | undefined;
  /** Watermark, lateness and emit mode; default: no out-of-orderness, idle after 60 s, emit updates and windows that never close. */
  readonly time?: Partial<ViewPlan['time']> | undefined;
  readonly output: { readonly sink: string; readonly table: string };
  /** A global window's trigger (required with one). */
  readonly trigger?: GlobalTrigger | undefined;
  /** Where late changes go; undefined: the dead-letter queue. */
  readonly late?: { readonly sink: string; readonly table: string } | undefined;
}

/** Windows whose bounds depend on the key's other changes: the runtime assigns them from stored state (keyed-windows.ts). */
export const KEYED_WINDOW_KINDS: ReadonlySet<WindowSpec['kind']> = new Set(['session', 'sliding']);

/** One row's share in one group (and window): the values each aggregation adds or retracts. */
export interface Contribution {
  readonly groupId: string;
  /** The window it falls in, for a windowed view. */
  readonly window?: TimeWindow | undefined;
  /** The result's key: group columns, and window_start / window_end (epoch ms) when windowed. */
  readonly groupKey: Readonly<Row>;
  readonly values: readonly unknown[];
  /** The (mapped) row it comes from: what a process operator is given. */
  readonly row?: Readonly<Row>;
  /** Session and sliding windows: the event time; the window is assigned from the key's stored windows. */
  readonly eventMs?: number | undefined;
}

/** A view compiled once at startup from its config (or the TypeScript API). */
export interface ViewPlan {
  readonly name: string;
  readonly input: string;
  /** Every input table (several for a merged view), `input` first. */
  readonly inputs: readonly string[];
  readonly mode: 'table' | 'stream';
  /** The columns an image keeps: everything the view reads, nothing more (a view with a filter or map function keeps the whole row). */
  readonly columns: readonly string[];
  readonly groupBy: readonly string[];
  /** The result's key columns, in their order (stored keys come back from jsonb in another order). */
  readonly keyColumns: readonly string[];
  readonly aggregations: readonly PlannedAggregation[];
  readonly window: WindowSpec | undefined;
  readonly eventTime: string | undefined;
  readonly process: ProcessDefinition | undefined;
  /** Watermark, lateness and emit mode (windowed views). */
  readonly time: { readonly outOfOrdernessMs: number; readonly idleTimeoutMs: number; readonly graceMs: number; readonly emit: 'updates' | 'final' };
  /** The event time of an image (epoch ms), undefined when the view has no window or the time is missing. */
  eventTimeOf(image: Readonly<Row>): number | undefined;
  readonly output: { readonly sink: string; readonly table: TableId };
  readonly trigger: GlobalTrigger | undefined;
  readonly late: { readonly sink: string; readonly table: TableId } | undefined;
  /** The row as the view stores it: its columns only, unchanged TOAST values taken from `previous`. */
  image(event: ChangeEvent, row: Readonly<Row>, previous: Readonly<Row> | null): Row;
  /** `observe`: the rows are being added or retracted (peek sees it); omitted when only read. */
  contributions(image: Readonly<Row>, observe?: 'add' | 'retract'): Contribution[];
  /** Connect schemas of the result columns, from the input's (undefined when the input had none). */
  resultColumns(input: readonly ColumnSchema[] | undefined): ColumnSchema[] | undefined;
}

type Scalar = string | number | boolean | null;

function normalize(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'bigint') {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value.toString();
  }
  return value;
}

function compileWhere(where: NonNullable<ViewConfig['where']>): (row: Readonly<Row>) => boolean {
  const tests: Array<(v: unknown) => boolean> = [];
  const eq = (expected: Scalar) => (v: unknown) => normalize(v) === expected;
  if (where.equals !== undefined) tests.push(eq(where.equals));
  if (where.not_equals !== undefined) {
    const e = eq(where.not_equals);
    tests.push((v) => !e(v));
  }
  if (where.in !== undefined) {
    const set = new Set<unknown>(where.in);
    tests.push((v) => set.has(normalize(v)));
  }
  return (row) => {
    const v = Object.hasOwn(row, where.field) ? row[where.field] : null;
    return tests.every((t) => t(v));
  };
}

function windowSpec(config: ViewConfig['window']): WindowSpec | undefined {
  if (!config) return undefined;
  if ('tumbling' in config) return { kind: 'tumbling', sizeMs: config.tumbling };
  if ('hopping' in config) return { kind: 'hopping', sizeMs: config.hopping.size, advanceMs: config.hopping.advance };
  if ('session' in config) return { kind: 'session', gapMs: config.session.gap };
  if ('sliding' in config) return { kind: 'sliding', differenceMs: config.sliding.difference };
  return { kind: 'global' };
}

function triggerOf(config: ViewConfig['window']): GlobalTrigger | undefined {
  if (!config || !('global' in config)) return undefined;
  const t = config.global.trigger;
  return 'count' in t ? { kind: 'count', every: t.count } : { kind: 'time', everyMs: t.every };
}

const tableId = (id: string): TableId => {
  const [schema, table] = id.split('.') as [string, string];
  return { id, db: undefined, schema, table };
};

const INT64: ColumnSchema = { name: '', type: 'int64', semantic: undefined, optional: false, parameters: undefined, items: undefined };
const DOUBLE: ColumnSchema = { ...INT64, type: 'double', optional: true };
const DECIMAL: ColumnSchema = { ...INT64, type: 'bytes', semantic: 'io.debezium.data.VariableScaleDecimal', optional: true };
const INTEGER_TYPES = new Set(['int8', 'int16', 'int32', 'int64']);

/** What PostgreSQL's aggregate gives for this input: sums of integers are integers, of decimals decimals. */
function resultColumn(a: PlannedAggregation, input: ColumnSchema | undefined): ColumnSchema {
  switch (a.fn) {
    case 'count':
    case 'count_distinct':
      return { ...INT64, name: a.name };
    case 'min':
    case 'max':
      return input ? { ...input, name: a.name, optional: true } : { ...DOUBLE, name: a.name };
    case 'sum':
      if (input && INTEGER_TYPES.has(input.type) && input.semantic === undefined) return { ...DECIMAL, name: a.name };
      if (input && (input.type === 'double' || input.type === 'float')) return { ...DOUBLE, name: a.name };
      return { ...DECIMAL, name: a.name };
    default:
      // avg, variance and standard deviation: exact decimals (as PostgreSQL's numeric) unless the input is a float.
      if (input && (input.type === 'double' || input.type === 'float')) return { ...DOUBLE, name: a.name };
      return { ...DECIMAL, name: a.name };
  }
}

/** The definition of a `views:` entry of the config file. */
export function definitionFromConfig(config: ViewConfig): ViewDefinition {
  return {
    input: 'table' in config.from ? config.from.table : config.from.stream,
    mode: 'table' in config.from ? 'table' : 'stream',
    reads: config.where ? [config.where.field] : [],
    filter: config.where ? compileWhere(config.where) : undefined,
    groupBy: config.group_by,
    aggregations: Object.entries(config.aggregations).map(([aggName, a]) => ({
      name: aggName,
      fn: a.fn,
      column: a.column,
      aggregator: createAggregator(a.fn, { star: a.column === undefined }),
    })),
    window: windowSpec(config.window),
    eventTime: config.event_time === 'commit_time' ? undefined : config.event_time,
    time: { outOfOrdernessMs: config.out_of_orderness ?? 0, idleTimeoutMs: config.idle_timeout, graceMs: config.grace, emit: config.emit },
    output: config.to,
    trigger: triggerOf(config.window),
    late: config.late ? { sink: config.late.sink, table: config.late.table ?? `${config.to.table}_late` } : undefined,
  };
}

export function planView(name: string, view: ViewConfig | ViewDefinition): ViewPlan {
  const def = 'from' in view ? definitionFromConfig(view) : view;
  const { mode, input, eventTime, window, filter, rows, groupBy, aggregations } = def;
  checkWindow(name, def);
  const inputs = [...new Set([input, ...(def.inputs ?? [])])];
  const merged = inputs.length > 1;
  const wholeRow = def.reads === undefined;
  const columns = wholeRow
    ? [...(window && eventTime === undefined ? [COMMIT_TIME_COLUMN] : []), ...(merged ? [TABLE_COLUMN] : [])]
    : [
        ...new Set([
          ...groupBy,
          ...aggregations.flatMap((a) => (a.column === undefined ? [] : [a.column])),
          ...def.reads,
          ...(window ? [eventTime ?? COMMIT_TIME_COLUMN] : []),
        ]),
      ];
  const output: ViewPlan['output'] = { sink: def.output.sink, table: tableId(def.output.table) };
  const late: ViewPlan['late'] = def.late ? { sink: def.late.sink, table: tableId(def.late.table) } : undefined;
  const global = window?.kind === 'global';
  const keyed = window !== undefined && KEYED_WINDOW_KINDS.has(window.kind);
  /** The result carries window bounds: every window but the global one. */
  const bounded = window !== undefined && !global;

  function image(event: ChangeEvent, row: Readonly<Row>, previous: Readonly<Row> | null): Row {
    const out: Row = {};
    for (const c of wholeRow ? [...Object.keys(row), ...columns] : columns) {
      if (c === COMMIT_TIME_COLUMN) {
        out[c] = event.source.tsMs ?? event.tsMs ?? event.kafka.timestamp;
        continue;
      }
      if (c === TABLE_COLUMN) {
        out[c] = event.table.id;
        continue;
      }
      let v = Object.hasOwn(row, c) ? row[c] : undefined;
      if (isUnavailable(v)) {
        // An unchanged TOASTed column: the stored image knows it; without one it cannot be used.
        if (previous && Object.hasOwn(previous, c)) v = previous[c];
        else throw new ViewInputError('VIEW_UNAVAILABLE', `view ${name}: column ${c} is an unchanged TOASTed value and no earlier image of the row is stored`);
      }
      out[c] = v === undefined ? null : v;
    }
    return out;
  }

  /** The rows the view groups: the image, filtered and mapped (none when the filter drops it). */
  function rowsOf(img: Readonly<Row>, observe: RowsContext['observe']): readonly Readonly<Row>[] {
    if (filter && !userCall(name, 'filter', () => filter(img))) return [];
    if (!rows) return [img];
    const table = typeof img[TABLE_COLUMN] === 'string' ? img[TABLE_COLUMN] : input;
    return userCall(name, 'map', () => rows.fn(img, { table, observe }));
  }

  /** The event time's value: a column of the (mapped) row, or the commit time the image keeps. */
  function timeValueOf(img: Readonly<Row>, row: Readonly<Row>): unknown {
    return eventTime === undefined ? img[COMMIT_TIME_COLUMN] : row[eventTime];
  }

  function contributions(img: Readonly<Row>, observe?: 'add' | 'retract'): Contribution[] {
    return rowsOf(img, observe).flatMap((row) => rowContributions(img, row));
  }

  function rowContributions(img: Readonly<Row>, row: Readonly<Row>): Contribution[] {
    // A view with neither groups nor a window has one result row: keyed by the view's name, as sinks need a key.
    const key: Row = groupBy.length === 0 && !bounded ? { view: name } : {};
    for (const g of groupBy) key[g] = normalize(row[g]);
    const values = aggregations.map((a) => (a.column !== undefined ? row[a.column] : a.fn === 'custom' ? row : null));
    // Only a process is given the row.
    const given = def.process ? { row } : {};
    if (!window) return [{ groupId: jsonWithBigints(Object.values(key)), groupKey: key, values, ...given }];
    const time = timeValueOf(img, row);
    const t = eventTimeMs(time);
    if (t === undefined) {
      const column = eventTime ?? COMMIT_TIME_COLUMN;
      throw new ViewInputError('VIEW_NOT_A_TIME', `view ${name}: event time column ${column} holds ${jsonWithBigints(time) ?? 'nothing'}, not a time`);
    }
    if (global) return [{ groupId: jsonWithBigints(Object.values(key)), groupKey: key, values, window: GLOBAL_WINDOW }];
    if (keyed) return [{ groupId: jsonWithBigints(Object.values(key)), groupKey: key, values, eventMs: Math.floor(t) }];
    return assignWindows(window, t).map((w) => {
      const groupKey = { ...key, window_start: w.start, window_end: w.end };
      return { groupId: jsonWithBigints(Object.values(groupKey)), groupKey, values, window: w, ...given };
    });
  }

  function resultColumns(inputColumns: readonly ColumnSchema[] | undefined): ColumnSchema[] | undefined {
    // A mapped row's columns and a custom aggregation's result have their own types: no schema is better than a wrong one.
    if (!inputColumns || (rows && !rows.sameColumns) || def.process || aggregations.some((a) => a.fn === 'custom')) return undefined;
    const byName = new Map(inputColumns.map((c) => [c.name, c]));
    const keyCols = groupBy.map((g) => ({ ...(byName.get(g) ?? { ...INT64, type: 'string' }), name: g, optional: false }));
    if (groupBy.length === 0 && !bounded) keyCols.push({ ...INT64, type: 'string', name: 'view' });
    const windowCols = bounded ? [{ ...INT64, name: 'window_start' }, { ...INT64, name: 'window_end' }] : [];
    return [
      ...keyCols,
      ...windowCols,
      ...aggregations.map((a) => resultColumn(a, a.column === undefined ? undefined : byName.get(a.column))),
    ];
  }

  const time: ViewPlan['time'] = {
    outOfOrdernessMs: def.time?.outOfOrdernessMs ?? 0,
    idleTimeoutMs: def.time?.idleTimeoutMs ?? 60_000,
    // Without a grace a window of `emit: updates` never closes (a table's row may change at any time); `final` needs one.
    graceMs: def.time?.graceMs ?? (def.time?.emit === 'final' ? 0 : Number.POSITIVE_INFINITY),
    emit: def.time?.emit ?? 'updates',
  };
  /** Of a flatMap's several rows, the latest: the clock keeps the highest time it saw. */
  const eventTimeOf = (img: Readonly<Row>): number | undefined => {
    if (!window) return undefined;
    const times = rowsOf(img, undefined).flatMap((row) => eventTimeMs(timeValueOf(img, row)) ?? []);
    return times.length === 0 ? undefined : Math.max(...times);
  };
  const keyColumns = [...groupBy, ...(bounded ? ['window_start', 'window_end'] : []), ...(groupBy.length === 0 && !bounded ? ['view'] : [])];
  const process = def.process;
  const trigger = def.trigger;
  return {
    name,
    input,
    inputs,
    mode,
    columns,
    groupBy,
    keyColumns,
    aggregations,
    window,
    eventTime,
    process,
    time,
    eventTimeOf,
    output,
    trigger,
    late,
    image,
    contributions,
    resultColumns,
  };
}

/** Where a result's window closes (exclusive, epoch ms), from its key; undefined without time bounds (no window, or the global one). */
export function windowCloseOf(plan: ViewPlan, key: Readonly<Row>): number | undefined {
  const end = key['window_end'];
  return plan.window && plan.window.kind !== 'global' && typeof end === 'number' ? lastEventMs({ start: end, end }, plan.window.kind) + 1 : undefined;
}

/** A stored image's key: the primary key, with the table in front for a merged view (two tables' keys may be equal). */
export function rowKeyOf(plan: ViewPlan, event: ChangeEvent, pk: string): string {
  return plan.inputs.length > 1 ? `${event.table.id}\u001f${pk}` : pk;
}

/** Where a truncate's position is kept: per view, or per view and table for a merged view. */
export function truncateScope(plan: ViewPlan, table: string): string {
  return plan.inputs.length > 1 ? `${plan.name}@${table}` : plan.name;
}

/** Thrown by a step of a rows function (src/view/dsl.ts) to say which of the user's functions threw. */
export class UserStepError extends Error {
  constructor(
    readonly step: string,
    readonly thrown: unknown,
  ) {
    super(thrown instanceof Error ? thrown.message : String(thrown));
  }
}

/** A user's function that throws fails its record (dead-lettered with stage view), not the batch. */
export function userCall<T>(view: string, step: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const [which, cause] = err instanceof UserStepError ? [err.step, err.thrown] : [step, err];
    throw new ViewInputError('VIEW_FUNCTION_FAILED', `view ${view}: its ${which} function threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** What the config schema and the DSL check already, again for definitions built by hand: a plan that cannot run is refused at startup. */
function checkWindow(name: string, def: ViewDefinition): void {
  const kind = def.window?.kind;
  if (kind === 'global' && !def.trigger) throw new ViewSpecError(`view ${name}: a global window needs a trigger`);
  if (kind !== 'global' && def.trigger) throw new ViewSpecError(`view ${name}: a trigger needs a global window`);
  if ((kind === 'session' || kind === 'sliding') && def.mode !== 'stream') throw new ViewSpecError(`view ${name}: ${kind} windows read a stream`);
  if (def.late && !def.window) throw new ViewSpecError(`view ${name}: late needs a window`);
  if (kind === 'session') {
    for (const a of def.aggregations) {
      if (!a.aggregator.merge) throw new ViewSpecError(`view ${name}: aggregation ${a.name} has no merge, which session windows need to join two sessions`);
    }
  }
  if (def.window) validateWindowSpec(def.window);
  if (def.trigger) validateTrigger(def.trigger);
}
