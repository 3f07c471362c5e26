import type { Row } from '../model/change-event.ts';
import type { AggValue, AggregationKind, Aggregator, JsonValue } from './core/aggregation.ts';
import { createAggregator, type AnyAggregator } from './core/aggregations/index.ts';
import type { GlobalTrigger } from './core/trigger.ts';
import type { WindowSpec } from './core/windows.ts';
import type { ProcessDefinition, StateDecl, StateHandles } from './keyed-state.ts';
import { durationSchema } from './view-config.ts';
import { UserStepError, type PlannedAggregation, type RowsContext, type ViewDefinition } from './view-plan.ts';

/**
 * Views written in TypeScript, in the style of Kafka Streams:
 *
 *   fromTable<Order>('public.orders').filter((o) => o.status !== 'cancelled').groupBy('customer_id')
 *     .aggregate({ orders: count(), revenue: sum('total') }).to('replica', { table: 'public.revenue' })
 *
 * The builder only collects a ViewDefinition, the same one a `views:` entry of the config file
 * becomes; planView compiles both. Column names are checked against the row type, and the result
 * row's type follows from the group columns, the window and the aggregations.
 */

/** Milliseconds, or text such as `500ms`, `5s`, `30m`, `1h`, `1d`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

/** A window with time bounds: its results carry window_start and window_end. Session and sliding windows read a stream. */
export type WindowOption =
  | { readonly tumbling: Duration }
  | { readonly hopping: { readonly size: Duration; readonly advance: Duration } }
  | { readonly session: { readonly gap: Duration } }
  | { readonly sliding: { readonly difference: Duration } };

/** One result per key, emitted after every `count` changes or at most once per `every` of the watermark. */
export type GlobalWindowOption = { readonly global: { readonly trigger: { readonly count: number } | { readonly every: Duration } } };

/** One aggregation of `aggregate({...})`: its kind, the column it reads, and (custom only) its result type. */
export interface ViewAggregation<F extends AggregationKind = AggregationKind, C extends string = string, T = unknown> {
  readonly fn: F;
  readonly column: C | undefined;
  readonly aggregator: AnyAggregator;
  /** Type only: what a custom aggregation's result() returns. */
  readonly resultType?: T;
}

/** A finished view, for the `views` of a handlers module; `R` is the type of its result rows. */
export interface TypedView<R extends object = object> {
  readonly definition: ViewDefinition;
  /** What is wrong with the definition (a bad duration…); the config loader reports each with the view's path. */
  readonly problems: readonly string[];
  /** Type only. */
  readonly rowType?: R;
}

type Columns<S> = keyof S & string;
type ValueOf<S, C> = C extends keyof S ? Exclude<S[C], undefined> : never;
/** Group values as the result key holds them: a bigint within 2^53 becomes a number, a larger one its text. */
type KeyValue<V> = V extends bigint ? number | string : V;
/** Decimal text sums to decimal text; integers to a number, or a bigint beyond 2^53; floats to a number. */
type SumOf<V> = [Exclude<V, null>] extends [string]
  ? string | null
  : [Exclude<V, null>] extends [number | bigint]
    ? number | bigint | null
    : number | bigint | string | null;
/** Exact decimal text for integers and decimals, a number for floats. */
type MeanOf<V> = [Exclude<V, null>] extends [string] ? string | null : string | number | null;

type AggregationResult<S, A> =
  A extends ViewAggregation<infer F, infer C, infer T>
    ? F extends 'count' | 'count_distinct'
      ? number
      : F extends 'sum'
        ? SumOf<ValueOf<S, C>>
        : F extends 'min' | 'max'
          ? (ValueOf<S, C> extends bigint ? number | bigint : ValueOf<S, C>) | null
          : F extends 'custom'
            ? T
            : MeanOf<ValueOf<S, C>>
    : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

export interface WindowBounds {
  /** Epoch milliseconds, inclusive. */
  readonly window_start: number;
  /** Epoch milliseconds, exclusive. */
  readonly window_end: number;
}

/** A view with neither group columns nor a window has one result row, keyed by the view's name. */
type KeyColumns<S, G extends string, W extends boolean> = [G] extends [never]
  ? W extends true
    ? WindowBounds
    : { readonly view: string }
  : { readonly [K in G]: KeyValue<ValueOf<S, K>> } & (W extends true ? WindowBounds : unknown);

export type ResultRow<S, G extends string, W extends boolean, A> = Simplify<
  KeyColumns<S, G, W> & { readonly [N in keyof A]: AggregationResult<S, A[N]> }
>;

type AggregationsOf<S> = Readonly<Record<string, ViewAggregation<AggregationKind, Columns<S>>>>;

/** The result rows of a process view: its key columns and what its function returns. */
export type ProcessResultRow<S, G extends string, R> = Simplify<KeyColumns<S, G, false> & { readonly [K in Exclude<keyof R, G | 'view'>]: R[K] }>;

/** What a process function is given besides the row. */
export interface ProcessContext<K, D> {
  /** The key's columns: the view's groupBy columns (`{ view }` without any). */
  readonly key: K;
  /** add: the row enters the view; retract: a table row's earlier image leaves it (update, delete, truncate). */
  readonly change: 'add' | 'retract';
  /** The change's event time (its eventTime column, or its commit time), epoch ms. */
  readonly timeMs: number;
  /** The key's state: what `state` declared, each a value, list or map. */
  readonly state: StateHandles<D>;
}

/** `process({ state, ttl, apply })`: a custom processor with keyed state. */
export interface ProcessSpec<S, K, D, R> {
  /** The states each key has: `{ seen: valueState<number>(), pages: listState<string>(), totals: mapState<number>() }`. */
  readonly state?: D;
  /**
   * Entries expire this long after they were last written, on the view's event time (its stream
   * time: the highest event time read) or the wall clock. Expired entries are never read and are removed.
   */
  readonly ttl?: { readonly after: Duration; readonly clock?: 'event_time' | 'wall_clock' };
  /** Called for each row that enters (or, for a table, leaves) the view: return the key's new result row, null to delete it, undefined to leave it. */
  apply(row: S, context: ProcessContext<K, D>): R | null | undefined;
}

/** One step of a source's chain: the rows one row becomes (none: dropped). */
type Step = (row: Row, context: RowsContext) => readonly Row[];

/** The steps one input table's rows go through; a merged view has several (maybe of one table). */
interface Chain {
  readonly input: string;
  readonly steps: readonly Step[];
}

interface Collected {
  readonly mode: 'table' | 'stream';
  readonly chains: readonly Chain[];
  /** Only filters, branches and peeks: the rows are the input's, and results keep its column schemas. */
  readonly sameColumns: boolean;
  readonly groupBy: readonly string[];
  readonly window: WindowSpec | undefined;
  readonly trigger?: GlobalTrigger | undefined;
  readonly eventTime: string | undefined;
  readonly process?: ProcessDefinition | undefined;
  readonly problems: readonly string[];
}

// The user's functions are typed by the row type they declared; the runtime hands them its rows.
type RowFn<T> = (row: Row, context: RowsContext) => T;
const untyped = <S, T>(fn: (row: S, context: RowsContext) => T): RowFn<T> => fn as unknown as RowFn<T>;

/** A step calling one of the user's functions: if it throws, the error names it (VIEW_FUNCTION_FAILED). */
function userStep(name: string, fn: Step): Step {
  return (row, context) => {
    try {
      return fn(row, context);
    } catch (err) {
      throw err instanceof UserStepError ? err : new UserStepError(name, err);
    }
  };
}

/** The rows function of a definition: each chain of the image's table, each step on every row the previous gave. */
function rowsOf(chains: readonly Chain[]): NonNullable<ViewDefinition['rows']>['fn'] {
  return (row, context) =>
    chains
      .filter((chain) => chain.input === context.table)
      .flatMap((chain) => chain.steps.reduce<readonly Row[]>((rows, step) => rows.flatMap((r) => step(r, context)), [row as Row]));
}

/** What a type guard narrows to; a plain predicate keeps the type. */
type Narrowed<S, P> = P extends (row: S) => row is (infer T extends S) ? T : S;

/** The rows of a table or stream, before grouping. */
export class ViewSource<S extends object> {
  constructor(private readonly c: Collected) {}

  private then<T extends object>(name: string, fn: Step, sameColumns: boolean): ViewSource<T> {
    const step = userStep(name, fn);
    return new ViewSource<T>({ ...this.c, chains: this.c.chains.map((ch) => ({ ...ch, steps: [...ch.steps, step] })), sameColumns: this.c.sameColumns && sameColumns });
  }

  /** Keeps the rows for which `predicate` is true (a type guard narrows the row type). */
  filter<T extends S>(predicate: (row: S) => row is T): ViewSource<T>;
  filter(predicate: (row: S) => boolean): ViewSource<S>;
  filter(predicate: (row: S) => boolean): ViewSource<S> {
    const fn = untyped(predicate);
    return this.then('filter', (row, ctx) => (fn(row, ctx) === true ? [row] : []), true);
  }

  /**
   * Replaces each row by `fn(row)` before grouping. It must be pure: for a table, the stored image of
   * a row is mapped again when an update or delete retracts it, and must give what it gave before.
   */
  map<T extends object>(fn: (row: S) => T): ViewSource<T> {
    const f = untyped(fn);
    return this.then('map', (row, ctx) => [f(row, ctx) as Row], false);
  }

  /**
   * Replaces each row by the rows `fn(row)` gives (none drops it). Pure, as map: an update of a
   * table row retracts every row its stored image gave and adds the ones the new image gives.
   */
  flatMap<T extends object>(fn: (row: S) => Iterable<T>): ViewSource<T> {
    const f = untyped(fn);
    return this.then('flatMap', (row, ctx) => [...f(row, ctx)] as Row[], false);
  }

  /**
   * Calls `fn` with each row as it enters the view (`add`) or, for a table, leaves it (`retract`:
   * the stored image of an updated, deleted or truncated row), changing nothing. A batch retried
   * after a failure calls it again: use it to observe, not to count.
   */
  peek(fn: (row: S, change: 'add' | 'retract') => void): ViewSource<S> {
    const f = untyped((row: S, ctx: RowsContext) => (ctx.observe === undefined ? undefined : fn(row, ctx.observe)));
    return this.then(
      'peek',
      (row, ctx) => {
        f(row, ctx);
        return [row];
      },
      true,
    );
  }

  /**
   * Splits the rows by predicates: each row goes to the first branch whose predicate it matches (to
   * none if it matches none; end with `() => true` for a default branch). Each branch is a source
   * of its own view; type guards narrow a branch's row type. The predicates must be pure.
   */
  branch<const P extends readonly ((row: S) => boolean)[]>(...predicates: P): { readonly [I in keyof P]: ViewSource<Narrowed<S, P[I]>> } {
    const preds = predicates.map((p) => untyped(p));
    const branches = preds.map((pred, i) =>
      this.then<S>('branch', (row, ctx) => (preds.slice(0, i).some((earlier) => earlier(row, ctx) === true) || pred(row, ctx) !== true ? [] : [row]), true),
    );
    return branches as unknown as { readonly [I in keyof P]: ViewSource<Narrowed<S, P[I]>> };
  }

  /**
   * The union of these rows and `other`'s (both tables or both streams; of one table or several):
   * every row of either goes on, each through its own earlier steps. A truncate of one table
   * retracts only that table's rows.
   */
  merge(other: ViewSource<S>): ViewSource<S> {
    const o = other.c;
    const problems = [...this.c.problems, ...o.problems];
    if (o.mode !== this.c.mode) problems.push(`merge: a ${this.c.mode} cannot be merged with a ${o.mode} (read both with fromTable, or both with fromStream)`);
    return new ViewSource<S>({ ...this.c, chains: [...this.c.chains, ...o.chains], sameColumns: this.c.sameColumns && o.sameColumns, problems });
  }

  /** Groups by these columns (none: one result row for the whole input). */
  groupBy<G extends Columns<S> = never>(...columns: G[]): GroupedView<S, G, false> {
    return new GroupedView<S, G, false>({ ...this.c, groupBy: columns });
  }
}

/** Grouped rows, optionally windowed: aggregate them. */
export class GroupedView<S extends object, G extends string, W extends boolean> {
  constructor(private readonly c: Collected) {}

  /**
   * Tumbling or hopping windows (aligned to the epoch as PostgreSQL's date_bin; a table needs
   * eventTime), session or sliding windows of a stream (both ends inclusive), or a global window
   * with a trigger (its results have no window bounds).
   */
  windowedBy(window: GlobalWindowOption): GroupedView<S, G, false>;
  windowedBy(window: WindowOption): GroupedView<S, G, true>;
  windowedBy(window: WindowOption | GlobalWindowOption): GroupedView<S, G, boolean> {
    const problems = [...this.c.problems];
    const ms = (d: Duration, what: string): number => {
      const parsed = durationSchema.safeParse(d);
      if (parsed.success) return parsed.data;
      problems.push(`window ${what}: ${String(d)} is not a duration (a positive integer of milliseconds, or text such as 500ms, 5s, 30m, 1h, 1d)`);
      return 1;
    };
    let trigger: GlobalTrigger | undefined;
    let spec: WindowSpec;
    if ('tumbling' in window) spec = { kind: 'tumbling', sizeMs: ms(window.tumbling, 'tumbling') };
    else if ('hopping' in window) {
      spec = { kind: 'hopping', sizeMs: ms(window.hopping.size, 'hopping.size'), advanceMs: ms(window.hopping.advance, 'hopping.advance') };
      if (spec.advanceMs > spec.sizeMs) problems.push('window hopping.advance must not exceed size');
    } else if ('session' in window) spec = { kind: 'session', gapMs: ms(window.session.gap, 'session.gap') };
    else if ('sliding' in window) spec = { kind: 'sliding', differenceMs: ms(window.sliding.difference, 'sliding.difference') };
    else {
      spec = { kind: 'global' };
      const t = window.global.trigger;
      if ('count' in t) {
        if (!Number.isSafeInteger(t.count) || t.count <= 0) problems.push(`window global.trigger.count: ${String(t.count)} is not a whole number > 0`);
        trigger = { kind: 'count', every: t.count };
      } else trigger = { kind: 'time', everyMs: ms(t.every, 'global.trigger.every') };
    }
    if ((spec.kind === 'session' || spec.kind === 'sliding') && this.c.mode !== 'stream') {
      problems.push(`${spec.kind} windows read a stream: fromStream(…)`);
    }
    return new GroupedView<S, G, boolean>({ ...this.c, window: spec, trigger, problems });
  }

  /** The column of the (mapped) row holding the event time, or `commit_time` (the default; source.ts_ms). */
  eventTime(column: Columns<S> | 'commit_time'): GroupedView<S, G, W> {
    return new GroupedView<S, G, W>({ ...this.c, eventTime: column === 'commit_time' ? undefined : column });
  }

  /**
   * A custom processor with keyed state (per group key: value, list and map states with an optional
   * TTL), in the same transaction as the rest of the view's state and its input offsets. Its results
   * are rows keyed by the group columns, written like an aggregation's.
   */
  process<R extends object, D extends Readonly<Record<string, StateDecl>> = Record<never, StateDecl>>(
    this: GroupedView<S, G, false>,
    spec: ProcessSpec<S, KeyColumns<S, G, false>, D, R>,
  ): AggregatedView<ProcessResultRow<S, G, R>> {
    const c = this.c;
    const problems = [...c.problems];
    let ttl: ProcessDefinition['ttl'];
    if (spec.ttl) {
      const parsed = durationSchema.safeParse(spec.ttl.after);
      if (parsed.success) ttl = { afterMs: parsed.data, clock: spec.ttl.clock ?? 'event_time' };
      else problems.push(`process ttl.after: ${String(spec.ttl.after)} is not a duration (a positive integer of milliseconds, or text such as 500ms, 5s, 30m, 1h, 1d)`);
    }
    const state = Object.fromEntries(Object.entries(spec.state ?? {}).map(([name, decl]) => [name, decl.kind]));
    const apply = spec.apply.bind(spec) as unknown as (row: Row, context: unknown) => Row | null | undefined;
    const process: ProcessDefinition = { state, ttl, fn: (row, call) => apply(row, call) };
    return new AggregatedView({ ...c, process, problems }, []);
  }

  /** Result column name -> aggregation: count(), sum('total'), custom(aggregate({...}))… */
  aggregate<A extends AggregationsOf<S>>(aggregations: A): AggregatedView<ResultRow<S, G, W, A>> {
    const c = this.c;
    const problems = [...c.problems];
    const planned: PlannedAggregation[] = Object.entries(aggregations).map(([name, a]) => ({ name, fn: a.fn, column: a.column, aggregator: a.aggregator }));
    if (planned.length === 0) problems.push('aggregate needs at least one aggregation');
    for (const a of planned) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(a.name)) problems.push(`aggregation ${a.name}: not a result column name`);
      if (c.groupBy.includes(a.name) || ['window_start', 'window_end', 'view'].includes(a.name)) {
        problems.push(`aggregation ${a.name} collides with a key column of the result`);
      }
    }
    if (c.window && c.mode === 'table' && c.eventTime === undefined) {
      problems.push('a windowed view of a table needs eventTime(column) (commit_time is not kept by a replayed snapshot)');
    }
    return new AggregatedView({ ...c, problems }, planned);
  }
}

/** Aggregated results: name where they go. */
export class AggregatedView<R extends object> {
  constructor(
    private readonly c: Collected,
    private readonly aggregations: readonly PlannedAggregation[],
  ) {}

  /** Results are change events of `table`, written by the named sink like any other table. */
  to(sink: string, target: { readonly table: `${string}.${string}` }): TypedView<R> {
    const { c } = this;
    const problems = [...c.problems];
    if (!/^[^.\s]+\.[^.\s]+$/.test(target.table)) problems.push(`to: table ${target.table} is not <schema>.<table>`);
    const [first] = c.chains;
    const inputs = [...new Set(c.chains.map((ch) => ch.input))];
    const plain = c.chains.length === 1 && first!.steps.length === 0;
    const definition: ViewDefinition = {
      input: first!.input,
      inputs,
      mode: c.mode,
      // A function may read any column, and so may a process: their images keep the whole row.
      reads: plain && !c.process ? [] : undefined,
      filter: undefined,
      rows: plain ? undefined : { fn: rowsOf(c.chains), sameColumns: c.sameColumns },
      process: c.process,
      groupBy: c.groupBy,
      aggregations: this.aggregations,
      window: c.window,
      ...(c.trigger ? { trigger: c.trigger } : {}),
      eventTime: c.eventTime,
      output: { sink, table: target.table },
    };
    return { definition, problems };
  }
}

function source<R extends object>(mode: 'table' | 'stream', tableId: string): ViewSource<R> {
  return new ViewSource<R>({ mode, chains: [{ input: tableId, steps: [] }], sameColumns: true, groupBy: [], window: undefined, eventTime: undefined, problems: [] });
}

/** A table read as a table: updates and deletes retract the row's earlier contribution. */
export function fromTable<R extends object>(tableId: string): ViewSource<R> {
  return source<R>('table', tableId);
}

/** A table read as a stream of occurrences: each change counts once, nothing is retracted. */
export function fromStream<R extends object>(tableId: string): ViewSource<R> {
  return source<R>('stream', tableId);
}

function builtin<F extends Exclude<AggregationKind, 'custom'>, C extends string>(fn: F, column: C | undefined): ViewAggregation<F, C, never> {
  return { fn, column, aggregator: createAggregator(fn, { star: fn === 'count' && column === undefined }) };
}

/** count(): rows (SQL count(*)); count('col'): non-null values of the column. */
export function count<C extends string = never>(column?: C): ViewAggregation<'count', C, never> {
  return builtin('count', column);
}
export const sum = <C extends string>(column: C): ViewAggregation<'sum', C, never> => builtin('sum', column);
export const min = <C extends string>(column: C): ViewAggregation<'min', C, never> => builtin('min', column);
export const max = <C extends string>(column: C): ViewAggregation<'max', C, never> => builtin('max', column);
export const avg = <C extends string>(column: C): ViewAggregation<'avg', C, never> => builtin('avg', column);
export const var_pop = <C extends string>(column: C): ViewAggregation<'var_pop', C, never> => builtin('var_pop', column);
export const var_samp = <C extends string>(column: C): ViewAggregation<'var_samp', C, never> => builtin('var_samp', column);
export const stddev_pop = <C extends string>(column: C): ViewAggregation<'stddev_pop', C, never> => builtin('stddev_pop', column);
export const stddev_samp = <C extends string>(column: C): ViewAggregation<'stddev_samp', C, never> => builtin('stddev_samp', column);
export const countDistinct = <C extends string>(column: C): ViewAggregation<'count_distinct', C, never> => builtin('count_distinct', column);

/**
 * A user's retractable aggregation (`aggregate({ init, add, subtract, result })`) of a column, or of
 * the whole (mapped) row without one. The result's type is what its result() returns.
 */
export function custom<St extends JsonValue, T extends AggValue, C extends string = never>(
  aggregator: Aggregator<St, T>,
  column?: C,
): ViewAggregation<'custom', C, T> {
  return { fn: 'custom', column, aggregator: aggregator as unknown as AnyAggregator };
}
