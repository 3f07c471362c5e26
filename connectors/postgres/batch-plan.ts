import { SinkError } from '../../src/errors.ts';
import { isUnavailable, type ChangeEvent, type ColumnSchema, type Row, type TableId } from '../../src/model/change-event.ts';
import { encodePosition } from '../../src/model/position.ts';
import { coalesce, type Segment } from '../../src/sink/coalesce.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import { inferPgType, pgTypeOfSchema } from './column-types.ts';
import { clipIdent, quoteIdent, renderTemplate, sideTableName } from './identifiers.ts';
import type { PostgresConfig } from './postgres-config.ts';
import type { TableNeed, TargetRef } from './table-catalog.ts';

/**
 * Turns a batch into statements-to-be: coalesced per key, resolved to target tables and columns,
 * grouped into units that each become one batched statement. Pure: no I/O here.
 */

/** Where a source table goes, and how its columns are named there. */
export interface Target {
  readonly ref: TargetRef;
  readonly sourceId: string;
  /** Source column -> target column (renamed and clipped), memoized. */
  rename(column: string): string;
  /** Source columns of the key when configured; otherwise the event key's fields. */
  readonly keySource: readonly string[] | undefined;
}

/** One coalesced event, ready to write. */
export interface Change {
  readonly event: ChangeEvent;
  /** Result slot: the segment's result array and this event's index in it. */
  readonly results: SinkResult[];
  readonly slot: number;
  readonly target: Target;
  readonly keyColumns: readonly string[];
  readonly keyValues: readonly unknown[];
  /** Stable text of the key values: dedupe, ordering, messages. */
  readonly keyText: string;
  readonly position: string;
  /** For upserts: the target columns the row sets (keys included), and their values. */
  readonly columns: readonly string[] | undefined;
  readonly values: readonly unknown[] | undefined;
}

export type Unit =
  | { readonly kind: 'upsert'; readonly ref: TargetRef; readonly columns: readonly string[]; readonly keys: readonly string[]; changes: Change[] }
  | { readonly kind: 'delete'; readonly ref: TargetRef; readonly keys: readonly string[]; changes: Change[] }
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
  return JSON.stringify(Object.fromEntries(change.keyColumns.map((k, i) => [k, change.keyValues[i]])), bigintSafe);
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
    return {
      ref: {
        id: `${schema}\u0000${name}`,
        schema,
        table: name,
        tombstone,
        qualified: `${quoteIdent(schema)}.${quoteIdent(name)}`,
        tombstoneQualified: `${quoteIdent(schema)}.${quoteIdent(tombstone)}`,
      },
      sourceId: table.id,
      keySource: override?.key_columns,
      rename(column) {
        let out = memo.get(column);
        if (out === undefined) {
          out = clipIdent(Object.hasOwn(renames, column) ? renames[column]! : column);
          memo.set(column, out);
        }
        return out;
      },
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
      // Per target, one change per target key: the newest (two source tables or a configured key
      // can map different source keys to one target row).
      const byTarget = new Map<string, { target: Target; byKey: Map<string, Change> }>();
      seg.events.forEach((event, slot) => {
        const change = this.change(event, slots, slot);
        if (!change) return;
        let group = byTarget.get(change.target.ref.id);
        if (!group) {
          group = { target: change.target, byKey: new Map() };
          byTarget.set(change.target.ref.id, group);
        }
        const prev = group.byKey.get(change.keyText);
        if (!prev || prev.position < change.position) group.byKey.set(change.keyText, change);
      });
      for (const id of [...byTarget.keys()].sort()) {
        const { target, byKey } = byTarget.get(id)!;
        let all = perTarget.get(id);
        if (!all) {
          all = { target, changes: [] };
          perTarget.set(id, all);
        }
        units.push(...this.units(target, [...byKey.values()], all.changes));
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
    const fail = (message: string, code: string) => {
      results[slot] = failure(this.sink, `${target.ref.qualified}: ${message}`, code, event);
      return undefined;
    };
    const keySource = target.keySource ?? (event.key ? Object.keys(event.key) : []);
    if (keySource.length === 0) {
      return fail(`event of ${event.table.id} has no key; set tables."${event.table.id}".key_columns`, 'PG_NO_KEY');
    }
    const keyValues: unknown[] = [];
    for (const k of keySource) {
      const v = pick(k, event.key, event.after, event.before);
      if (v === undefined || v === null) return fail(`key column ${quoteIdent(k)} has no value`, 'PG_NO_KEY');
      keyValues.push(v);
    }
    const keyColumns = keySource.map((k) => target.rename(k));
    const position = encodePosition(event.position);
    const keyText = JSON.stringify(keyValues, bigintSafe);
    const base = { event, results, slot, target, keyColumns, keyValues, keyText, position };
    if (event.op === 'd') return { ...base, columns: undefined, values: undefined };
    if (!event.after) return fail(`'${event.op}' event without a row image`, 'PG_NO_ROW');
    const columns: string[] = [];
    const values: unknown[] = [];
    for (const [col, v] of Object.entries(event.after)) {
      // Unchanged TOAST values and absent fields are not written: the stored value stays.
      if (v === undefined || isUnavailable(v)) continue;
      columns.push(target.rename(col));
      values.push(v);
    }
    keyColumns.forEach((k, i) => {
      if (!columns.includes(k)) {
        columns.push(k);
        values.push(keyValues[i]);
      }
    });
    return { ...base, columns, values };
  }

  /** Upserts grouped by the set of columns they write (one statement each), then the deletes. */
  private units(target: Target, changes: Change[], all: Change[]): Unit[] {
    // The same order in every transaction makes deadlocks between concurrent batches unlikely.
    changes.sort((a, b) => (a.keyText < b.keyText ? -1 : a.keyText > b.keyText ? 1 : 0));
    const keys = changes[0]?.keyColumns ?? [];
    const keySig = keys.join('\u0000');
    const upserts = new Map<string, Unit & { kind: 'upsert' }>();
    const deletes: Change[] = [];
    for (const change of changes) {
      if (change.keyColumns.join('\u0000') !== keySig) {
        change.results[change.slot] = failure(
          this.sink,
          `${target.ref.qualified} key ${describeKey(change)}: key columns differ from the other events of the table ` +
            `(${keys.map(quoteIdent).join(', ')})`,
          'PG_KEY_MISMATCH',
          change.event,
        );
        continue;
      }
      all.push(change);
      if (!change.columns) {
        deletes.push(change);
        continue;
      }
      const sig = change.columns.join('\u0000');
      let unit = upserts.get(sig);
      if (!unit) {
        unit = { kind: 'upsert', ref: target.ref, columns: change.columns, keys, changes: [] };
        upserts.set(sig, unit);
      }
      unit.changes.push(change);
    }
    const out: Unit[] = [...upserts.values()];
    if (deletes.length > 0) out.push({ kind: 'delete', ref: target.ref, keys, changes: deletes });
    return out;
  }

  private need(target: Target, changes: readonly Change[]): PlannedNeed {
    const keyColumns = changes[0]?.keyColumns ?? [];
    const columns = new Set<string>(keyColumns);
    for (const c of changes) c.columns?.forEach((col) => columns.add(col));
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

function pick(column: string, ...rows: (Readonly<Row> | null)[]): unknown {
  for (const row of rows) {
    const v = row?.[column];
    if (v !== undefined && !isUnavailable(v)) return v;
  }
  return undefined;
}

function* valuesOf(changes: readonly Change[], column: string): Generator<unknown> {
  for (const c of changes) {
    if (c.columns) {
      const i = c.columns.indexOf(column);
      if (i >= 0) yield c.values![i];
    } else {
      const i = c.keyColumns.indexOf(column);
      if (i >= 0) yield c.keyValues[i];
    }
  }
}
