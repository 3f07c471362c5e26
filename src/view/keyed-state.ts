import type { Row } from '../model/change-event.ts';
import type { JsonValue } from './core/aggregation.ts';

/**
 * Keyed state of a `process` operator: per key of the view (its groupBy columns), named value, list
 * and map states, each entry with an optional time to live. Pure: the runtime (process.ts) loads a
 * key's stored form, hands `process` the handles, and stores what they left.
 */

export type StateKind = 'value' | 'list' | 'map';

/** A declared state: `valueState<number>()`, `listState<string>()`, `mapState<Total>()`. */
export interface StateDecl<K extends StateKind = StateKind, T extends JsonValue = JsonValue> {
  readonly kind: K;
  /** Type only. */
  readonly valueType?: T;
}

export const valueState = <T extends JsonValue>(): StateDecl<'value', T> => ({ kind: 'value' });
export const listState = <T extends JsonValue>(): StateDecl<'list', T> => ({ kind: 'list' });
export const mapState = <V extends JsonValue>(): StateDecl<'map', V> => ({ kind: 'map' });

export interface ValueState<T> {
  /** undefined when never set, cleared or expired. */
  get(): T | undefined;
  set(value: T): void;
  clear(): void;
}

/** Each element has its own time to live, from when it was added. */
export interface ListState<T> {
  get(): T[];
  add(value: T): void;
  /** Replaces the list; every element's time to live starts again. */
  set(values: readonly T[]): void;
  clear(): void;
}

/** Each entry has its own time to live, from when it was last set. */
export interface MapState<V> {
  get(key: string): V | undefined;
  has(key: string): boolean;
  set(key: string, value: V): void;
  delete(key: string): void;
  keys(): string[];
  entries(): [string, V][];
  clear(): void;
}

export type StateHandles<D> = {
  readonly [N in keyof D]: D[N] extends StateDecl<'value', infer T>
    ? ValueState<T>
    : D[N] extends StateDecl<'list', infer T>
      ? ListState<T>
      : D[N] extends StateDecl<'map', infer T>
        ? MapState<T>
        : never;
};

/**
 * Time to live of every entry of a process's state, counted from its last write. `event_time`: the
 * view's stream time, the highest event time it has read (deterministic on replay); `wall_clock`: now.
 */
export interface TtlSpec {
  readonly afterMs: number;
  readonly clock: 'event_time' | 'wall_clock';
}

/** What a process function is given besides the row. */
export interface ProcessCall {
  /** The key's columns (the view's groupBy columns). */
  readonly key: Readonly<Row>;
  /** add: a row enters the view; retract: a table row's earlier image leaves it (update, delete, truncate). */
  readonly change: 'add' | 'retract';
  /** Event time of the change (its eventTime column, or its commit time), epoch ms. */
  readonly timeMs: number;
  readonly state: Readonly<Record<string, ValueState<JsonValue> | ListState<JsonValue> | MapState<JsonValue>>>;
}

/** A process operator as the plan holds it. */
export interface ProcessDefinition {
  readonly state: Readonly<Record<string, StateKind>>;
  readonly ttl: TtlSpec | undefined;
  /** The key's new result row, null to delete it, undefined to leave it as it is. */
  readonly fn: (row: Readonly<Row>, call: ProcessCall) => Row | null | undefined;
}

/** One entry as stored: its value and when it expires (epoch ms on the TTL's clock; null: never). */
interface Entry {
  readonly v: JsonValue;
  readonly e: number | null;
}

/** A key's state as stored (jsonb), by kind and state name. */
export interface StoredKeyedState {
  value?: Record<string, Entry>;
  list?: Record<string, Entry[]>;
  map?: Record<string, Record<string, Entry>>;
}

const live = (entry: Entry | undefined, nowMs: number): entry is Entry => entry !== undefined && (entry.e === null || entry.e > nowMs);

/** A key's state while a batch works on it. `now()` reads the TTL's clock at each call. */
export class KeyedState {
  private readonly values = new Map<string, Entry | undefined>();
  private readonly lists = new Map<string, Entry[]>();
  private readonly maps = new Map<string, Map<string, Entry>>();

  constructor(
    private readonly decls: Readonly<Record<string, StateKind>>,
    private readonly ttl: TtlSpec | undefined,
    stored: StoredKeyedState,
  ) {
    for (const [name, kind] of Object.entries(decls)) {
      if (kind === 'value') this.values.set(name, stored.value?.[name]);
      else if (kind === 'list') this.lists.set(name, [...(stored.list?.[name] ?? [])]);
      else this.maps.set(name, new Map(Object.entries(stored.map?.[name] ?? {})));
    }
  }

  /** Handles over this key's state; reads see only entries alive at `now()`, writes expire at now + ttl. */
  handles(now: () => number): ProcessCall['state'] {
    const expiry = () => (this.ttl ? now() + this.ttl.afterMs : null);
    const out: Record<string, ProcessCall['state'][string]> = {};
    for (const [name, kind] of Object.entries(this.decls)) {
      if (kind === 'value') {
        out[name] = {
          get: () => {
            const e = this.values.get(name);
            return live(e, now()) ? e.v : undefined;
          },
          set: (v) => void this.values.set(name, { v: json(name, v), e: expiry() }),
          clear: () => void this.values.set(name, undefined),
        } satisfies ValueState<JsonValue>;
      } else if (kind === 'list') {
        const list = this.lists.get(name)!;
        out[name] = {
          get: () => list.filter((e) => live(e, now())).map((e) => e.v),
          add: (v) => void list.push({ v: json(name, v), e: expiry() }),
          set: (vs) => void list.splice(0, list.length, ...vs.map((v) => ({ v: json(name, v), e: expiry() }))),
          clear: () => void list.splice(0, list.length),
        } satisfies ListState<JsonValue>;
      } else {
        const map = this.maps.get(name)!;
        const get = (k: string) => {
          const e = map.get(k);
          return live(e, now()) ? e.v : undefined;
        };
        out[name] = {
          get,
          has: (k) => get(k) !== undefined,
          set: (k, v) => void map.set(k, { v: json(name, v), e: expiry() }),
          delete: (k) => void map.delete(k),
          keys: () => [...map].filter(([, e]) => live(e, now())).map(([k]) => k),
          entries: () => [...map].filter(([, e]) => live(e, now())).map(([k, e]): [string, JsonValue] => [k, e.v]),
          clear: () => map.clear(),
        } satisfies MapState<JsonValue>;
      }
    }
    return out;
  }

  /** The stored form without the entries expired at `nowMs`; empty when nothing is left. */
  toStored(nowMs: number): StoredKeyedState {
    const out: StoredKeyedState = {};
    for (const [name, e] of this.values) if (live(e, nowMs)) (out.value ??= {})[name] = e;
    for (const [name, list] of this.lists) {
      const kept = list.filter((e) => live(e, nowMs));
      if (kept.length > 0) (out.list ??= {})[name] = kept;
    }
    for (const [name, map] of this.maps) {
      const kept = [...map].filter(([, e]) => live(e, nowMs));
      if (kept.length > 0) (out.map ??= {})[name] = Object.fromEntries(kept);
    }
    return out;
  }
}

/** When the last entry of a stored state expires: null if one never does; undefined when nothing is stored. */
export function expiresAt(stored: StoredKeyedState): number | null | undefined {
  const entries = [
    ...Object.values(stored.value ?? {}),
    ...Object.values(stored.list ?? {}).flat(),
    ...Object.values(stored.map ?? {}).flatMap((m) => Object.values(m)),
  ];
  if (entries.length === 0) return undefined;
  if (entries.some((e) => e.e === null)) return null;
  return Math.max(...entries.map((e) => e.e ?? 0));
}

/** State is stored as jsonb: a value JSON cannot hold (a bigint, a function, NaN) is refused when written. */
function json(state: string, value: JsonValue): JsonValue {
  const ok = (v: unknown): boolean =>
    v === null ||
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && Number.isFinite(v)) ||
    (Array.isArray(v) && v.every(ok)) ||
    (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype && Object.values(v as object).every(ok));
  if (!ok(value)) throw new TypeError(`state ${state}: ${String(value)} is not a JSON value (strings, finite numbers, booleans, null, arrays, plain objects)`);
  return value;
}
