import { SinkError } from '../../src/errors.ts';
import { isUnavailable, type ChangeEvent, type ColumnSchema, type Row, type TableId } from '../../src/model/change-event.ts';
import { encodePosition } from '../../src/model/position.ts';
import { coalesce, type Segment } from '../../src/sink/coalesce.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import { inferPgType, pgTypeOfSchema } from './column-types.ts';
import { clipIdent, quoteIdent, renderTemplate, sideTableName } from './identifiers.ts';
import type { PostgresConfig } from './config.ts';
import { TRUNCATES_TABLE, type TableNeed, type TargetRef } from './table-catalog.ts';

/**
 * Turns a batch into statements-to-be: coalesced per key, resolved to target tables and columns,
 * grouped into units that each become one batched statement. Pure: no I/O here.
 *
 * This runs for every row, so it avoids per-row allocations where it can: the key columns and the
 * set of columns a row writes (its shape) are interned per target, and values stay in the event's
 * row image until they are encoded.
 */

/** Key columns as the events name them and as the target does; interned, so compared by reference. */
export interface KeyLayout {
  readonly source: readonly string[];
  readonly columns: readonly string[];
}

/** The columns an upsert writes; rows of one shape go into one statement. Interned per target. */
export interface Shape {
  readonly key: KeyLayout;
  /** Source columns read from the row image, in order. */
  readonly source: readonly string[];
  /** Target columns: the renamed source columns, then the key columns the row image lacks. */
  readonly columns: readonly string[];
  /** For the columns after `source`: their index in the key values. */
  readonly fromKey: readonly number[];
}

/** Where a source table goes, and how its columns are named there. */
export interface Target {
  readonly ref: TargetRef;
  readonly sourceId: string;
  /** Source column -> target column (renamed and clipped), memoized. */
  rename(column: string): string;
  /** Source columns of the key when configured; otherwise the event key's fields. */
  readonly configuredKey: KeyLayout | undefined;
  lastKey: KeyLayout | undefined;
  lastShape: Shape | undefined;
  readonly shapes: Map<string, Shape>;
}

/** One coalesced event, ready to write. */
export interface Change {
  readonly event: ChangeEvent;
  /** Result slot: the segment's result array and this event's index in it. */
  readonly results: SinkResult[];
  readonly slot: number;
  readonly target: Target;
  readonly key: KeyLayout;
  readonly keyValues: readonly unknown[];
  readonly position: string;
  /** Upserts only: the columns the row writes. */
  readonly shape: Shape | undefined;
}

export type Unit =
  | { readonly kind: 'upsert'; readonly ref: TargetRef; readonly shape: Shape; changes: Change[] }
  | { readonly kind: 'delete'; readonly ref: TargetRef; readonly key: KeyLayout; changes: Change[] }
  | { readonly kind: 'truncate'; readonly ref: TargetRef; readonly results: SinkResult[]; readonly event: ChangeEvent };

export interface BatchPlan {
  readonly segments: readonly Segment[];
  readonly results: ReadonlyMap<Segment, SinkResult[]>;
  /** In execution order. */
  readonly units: Unit[];
  /** Per target with changes: what the table must have. */
  readonly needs: ReadonlyMap<string, PlannedNeed>;
  /** Targets of truncates (which may have no changes in the batch). */
  readonly truncated: ReadonlyMap<string, TargetRef>;
}

export interface PlannedNeed extends TableNeed {
  readonly changes: readonly Change[];
}

export function failure(sink: string, message: string, code: string, event: ChangeEvent, cause?: unknown): SinkResult {
  return { ok: false, error: new SinkError(sink, message, { code, retriable: false, cause, at: event.kafka }) };
}

function bigintSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The key as an object, for messages: {"id":5}. */
export function describeKey(change: Change): string {
  return JSON.stringify(Object.fromEntries(change.key.columns.map((k, i) => [k, change.keyValues[i]])), bigintSafe);
}

/** The value an upsert writes into `shape.columns[i]`. */
export function columnValue(change: Change, shape: Shape, i: number): unknown {
  const n = shape.source.length;
  return i < n ? change.event.after![shape.source[i]!] : change.keyValues[shape.fromKey[i - n]!];
}

function skipped(v: unknown): boolean {
  // Unchanged TOAST values and absent fields are not written: the stored value stays.
  return v === undefined || isUnavailable(v);
}

export class Planner {
  private readonly targets = new Map<string, Target>();

  constructor(
    private readonly sink: string,
    private readonly config: PostgresConfig,
  ) {}

  target(table: TableId): Target {
    let t = this.targets.get(table.id);
    if (!t) {
      t = this.resolve(table);
      this.targets.set(table.id, t);
    }
    return t;
  }

  private resolve(table: TableId): Target {
    const override = this.config.tables[table.id];
    const schema = clipIdent(renderTemplate(override?.schema ?? this.config.schema, table));
    const name = clipIdent(renderTemplate(override?.table ?? this.config.table, table));
    const tombstone = sideTableName(name, this.config.tombstone_table_suffix);
    const renames = override?.columns ?? {};
    const memo = new Map<string, string>();
    const rename = (column: string) => {
      let out = memo.get(column);
      if (out === undefined) {
        out = clipIdent(Object.hasOwn(renames, column) ? renames[column]! : column);
        memo.set(column, out);
      }
      return out;
    };
    const keySource = override?.key_columns;
    return {
      ref: {
        id: `${schema}\u0000${name}`,
        schema,
        table: name,
        tombstone,
        qualified: `${quoteIdent(schema)}.${quoteIdent(name)}`,
        tombstoneQualified: `${quoteIdent(schema)}.${quoteIdent(tombstone)}`,
        truncatesQualified: `${quoteIdent(schema)}.${quoteIdent(TRUNCATES_TABLE)}`,
      },
      sourceId: table.id,
      rename,
      configuredKey: keySource ? { source: keySource, columns: keySource.map(rename) } : undefined,
      lastKey: undefined,
      lastShape: undefined,
      shapes: new Map(),
    };
  }

  plan(batch: readonly ChangeEvent[]): BatchPlan {
    const segments = coalesce(batch);
    const results = new Map<Segment, SinkResult[]>();
    const units: Unit[] = [];
    const perTarget = new Map<string, { target: Target; changes: Change[] }>();
    const truncated = new Map<string, TargetRef>();

    for (const seg of segments) {
      if (seg.kind === 'truncate') {
        const slots: SinkResult[] = [OK];
        results.set(seg, slots);
        if (this.config.truncate === 'apply') {
          const { ref } = this.target(seg.event.table);
          truncated.set(ref.id, ref);
          units.push({ kind: 'truncate', ref, results: slots, event: seg.event });
        }
        continue;
      }
      const slots = seg.events.map(() => OK);
      results.set(seg, slots);
      const byTarget = new Map<string, { target: Target; changes: Change[]; sources: Set<string> }>();
      for (let slot = 0; slot < seg.events.length; slot++) {
        const change = this.change(seg.events[slot]!, slots, slot);
        if (!change) continue;
        let group = byTarget.get(change.target.ref.id);
        if (!group) {
          group = { target: change.target, changes: [], sources: new Set() };
          byTarget.set(change.target.ref.id, group);
        }
        group.changes.push(change);
        group.sources.add(change.event.table.id);
      }
      for (const id of [...byTarget.keys()].sort()) {
        const { target, changes, sources } = byTarget.get(id)!;
        let all = perTarget.get(id);
        if (!all) {
          all = { target, changes: [] };
          perTarget.set(id, all);
        }
        // coalesce left one event per source key. Two source tables mapped to one target, or a
        // configured key, can still put one target row twice in a statement: keep the newest.
        const unique = sources.size > 1 || target.configuredKey ? newestPerKey(changes) : changes;
        units.push(...this.units(target, unique, all.changes));
      }
    }

    const needs = new Map<string, PlannedNeed>();
    for (const [id, { target, changes }] of perTarget) {
      if (changes.length > 0) needs.set(id, this.need(target, changes));
    }
    return { segments, results, units, needs, truncated };
  }

  /** Validates and resolves one event; a bad one gets its failure and no change. */
  private change(event: ChangeEvent, results: SinkResult[], slot: number): Change | undefined {
    const target = this.target(event.table);
    const key = target.configuredKey ?? this.eventKey(target, event.key);
    if (!key) {
      return this.reject(results, slot, event, target, `event of ${event.table.id} has no key; set tables."${event.table.id}".key_columns`);
    }
    const keyValues: unknown[] = [];
    for (const k of key.source) {
      let v = event.key?.[k];
      if (skipped(v)) v = event.after?.[k];
      if (skipped(v)) v = event.before?.[k];
      if (v === undefined || v === null || isUnavailable(v)) {
        return this.reject(results, slot, event, target, `key column ${quoteIdent(k)} has no value`);
      }
      keyValues.push(v);
    }
    const position = encodePosition(event.position);
    if (event.op === 'd') return { event, results, slot, target, key, keyValues, position, shape: undefined };
    if (!event.after) return this.reject(results, slot, event, target, `'${event.op}' event without a row image`, 'PG_NO_ROW');
    const shape = this.shape(target, key, event.after);
    return { event, results, slot, target, key, keyValues, position, shape };
  }

  private reject(results: SinkResult[], slot: number, event: ChangeEvent, target: Target, message: string, code = 'PG_NO_KEY'): undefined {
    results[slot] = failure(this.sink, `${target.ref.qualified}: ${message}`, code, event);
    return undefined;
  }

  /** The key layout of an event key's fields; the previous one when the fields are the same. */
  private eventKey(target: Target, key: Readonly<Row> | null): KeyLayout | undefined {
    if (!key) return undefined;
    const last = target.lastKey;
    if (last) {
      let n = 0;
      let same = true;
      for (const k in key) {
        if (last.source[n++] !== k) {
          same = false;
          break;
        }
      }
      if (same && n === last.source.length) return last;
    }
    const source = Object.keys(key);
    if (source.length === 0) return undefined;
    target.lastKey = { source, columns: source.map(target.rename) };
    return target.lastKey;
  }

  /** The shape of a row image; the previous one when the row sets the same columns. */
  private shape(target: Target, key: KeyLayout, after: Readonly<Row>): Shape {
    const last = target.lastShape;
    if (last && last.key === key) {
      let n = 0;
      let same = true;
      for (const col in after) {
        if (skipped(after[col])) continue;
        if (last.source[n++] !== col) {
          same = false;
          break;
        }
      }
      if (same && n === last.source.length) return last;
    }
    const source = Object.keys(after).filter((col) => !skipped(after[col]));
    const sig = `${key.source.join('\u0000')}\u0001${source.join('\u0000')}`;
    let shape = target.shapes.get(sig);
    if (!shape) {
      const columns = source.map(target.rename);
      const fromKey: number[] = [];
      key.columns.forEach((k, i) => {
        if (!columns.includes(k)) {
          columns.push(k);
          fromKey.push(i);
        }
      });
      shape = { key, source, columns, fromKey };
      target.shapes.set(sig, shape);
    }
    target.lastShape = shape;
    return shape;
  }

  /** Upserts grouped by shape (one statement each), then the deletes. */
  private units(target: Target, changes: readonly Change[], all: Change[]): Unit[] {
    // No ordering by key: concurrent batches come from different partitions, hence different keys,
    // so they do not wait on each other's rows.
    const key = changes[0]?.key;
    const upserts = new Map<Shape, Unit & { kind: 'upsert' }>();
    const deletes: Change[] = [];
    for (const change of changes) {
      if (change.key !== key && change.key.columns.join('\u0000') !== key?.columns.join('\u0000')) {
        change.results[change.slot] = failure(
          this.sink,
          `${target.ref.qualified} key ${describeKey(change)}: key columns differ from the other events of the table ` +
            `(${key?.columns.map(quoteIdent).join(', ')})`,
          'PG_KEY_MISMATCH',
          change.event,
        );
        continue;
      }
      all.push(change);
      if (!change.shape) {
        deletes.push(change);
        continue;
      }
      let unit = upserts.get(change.shape);
      if (!unit) {
        unit = { kind: 'upsert', ref: target.ref, shape: change.shape, changes: [] };
        upserts.set(change.shape, unit);
      }
      unit.changes.push(change);
    }
    const out: Unit[] = [...upserts.values()];
    if (key && deletes.length > 0) out.push({ kind: 'delete', ref: target.ref, key, changes: deletes });
    return out;
  }

  private need(target: Target, changes: readonly Change[]): PlannedNeed {
    const keyColumns = changes[0]?.key.columns ?? [];
    const columns = new Set<string>(keyColumns);
    const shapes = new Set<Shape>();
    for (const c of changes) if (c.shape) shapes.add(c.shape);
    for (const shape of shapes) for (const col of shape.columns) columns.add(col);
    let schemas: Map<string, ColumnSchema> | undefined;
    return {
      ref: target.ref,
      sourceId: target.sourceId,
      keyColumns,
      columns,
      changes,
      typeOf(column) {
        if (!schemas) {
          schemas = new Map();
          const seen = new Set<readonly ColumnSchema[]>();
          for (const c of changes) {
            const cols = c.event.columns;
            if (!cols || seen.has(cols)) continue;
            seen.add(cols);
            for (const cs of cols) if (!schemas.has(target.rename(cs.name))) schemas.set(target.rename(cs.name), cs);
          }
        }
        const schema = schemas.get(column);
        if (schema) return pgTypeOfSchema(schema);
        return inferPgType(valuesOf(changes, column));
      },
    };
  }
}

function newestPerKey(changes: readonly Change[]): Change[] {
  const byKey = new Map<string, Change>();
  for (const change of changes) {
    const text = JSON.stringify(change.keyValues, bigintSafe);
    const prev = byKey.get(text);
    if (!prev || prev.position < change.position) byKey.set(text, change);
  }
  return [...byKey.values()];
}

function* valuesOf(changes: readonly Change[], column: string): Generator<unknown> {
  for (const c of changes) {
    if (c.shape) {
      const i = c.shape.columns.indexOf(column);
      if (i >= 0) yield columnValue(c, c.shape, i);
    } else {
      const i = c.key.columns.indexOf(column);
      if (i >= 0) yield c.keyValues[i];
    }
  }
}
