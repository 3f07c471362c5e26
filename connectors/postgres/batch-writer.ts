import pg from 'pg';
import type { Logger } from 'pino';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { encodePosition } from '../../src/model/position.ts';
import { expandResults } from '../../src/sink/coalesce.ts';
import type { SinkResult } from '../../src/sink/sink.ts';
import {
  type BatchPlan,
  type Change,
  describeKey,
  failure,
  type KeyLayout,
  type Planner,
  type Shape,
  type Unit,
} from './batch-plan.ts';
import { arrayElement, encodeValue, type Codec } from './column-types.ts';
import { describeDbError, isRetriable, isRowError, isStaleMetadata, sqlState } from './classify.ts';
import { deleteSql, inlineParams, literal, truncateSql, upsertSql } from './statements.ts';
import { TableProblem, type TableCatalog, type TableMeta, type TargetRef } from './table-catalog.ts';

const TEXT: Codec = { kind: 'text', array: false };

/** Rows per statement: small enough to encode the next chunk while the server runs this one. */
const CHUNK_ROWS = 1_000;
const FIRST_CHUNK_ROWS = 250;

export interface WriterOptions {
  readonly sink: string;
  readonly positionColumn: string;
  readonly catalog: TableCatalog;
  readonly planner: Planner;
  readonly log: Logger;
}

type Metas = Map<string, TableMeta>;
type RowUnit = Extract<Unit, { kind: 'upsert' | 'delete' }>;

/**
 * Where a batch's writes run: a transaction of their own, or (nested) inside a transaction the
 * caller holds open, under a savepoint, so that a failure leaves the caller's transaction usable.
 */
export type WriteMode = 'own' | 'nested';

/** The statements that open, end and undo a batch's writes in each mode. */
const SCOPE = {
  own: { begin: 'BEGIN', commit: 'COMMIT', rollback: 'ROLLBACK' },
  nested: {
    begin: 'SAVEPOINT cdc_batch',
    commit: 'RELEASE SAVEPOINT cdc_batch',
    rollback: 'ROLLBACK TO SAVEPOINT cdc_batch; RELEASE SAVEPOINT cdc_batch',
  },
} as const;

/**
 * Writes a batch in one transaction (or under a savepoint of the caller's, see WriteMode): per target
 * table one INSERT … ON CONFLICT per set of written columns and one DELETE (with its tombstones),
 * truncates in their place. When a statement fails
 * permanently, the batch is written again with each statement under a savepoint, bisecting the
 * failing ones down to the rows at fault: the good rows commit, each bad one gets its own error.
 */
export class BatchWriter {
  private readonly statements = new WeakMap<TableMeta, Map<Shape | KeyLayout, string>>();

  constructor(private readonly options: WriterOptions) {}

  /** Throws on failures of the whole batch (transport, or a bug); rows at fault become results. */
  async write(client: pg.ClientBase, batch: readonly ChangeEvent[], mode: WriteMode = 'own'): Promise<SinkResult[]> {
    const plan = this.options.planner.plan(batch);
    let metas = await this.prepare(client, plan, mode);
    let careful = false;
    for (let attempt = 1; ; attempt++) {
      const units = this.pending(plan.units, metas);
      try {
        await this.transaction(client, units, metas, careful, mode);
        break;
      } catch (err) {
        if (careful || isRetriable(err) || !(err instanceof pg.DatabaseError)) throw err;
        if (isStaleMetadata(err) && attempt === 1) {
          // A table changed under the cache (column dropped, table recreated): look again, evolve, retry.
          this.options.log.info({ sqlstate: sqlState(err) }, 'target table changed; reloading its metadata');
          for (const need of plan.needs.values()) this.options.catalog.invalidate(need.ref);
          for (const ref of plan.truncated.values()) this.options.catalog.invalidate(ref);
          metas = await this.prepare(client, plan, mode);
          continue;
        }
        this.options.log.debug({ sqlstate: sqlState(err) }, 'batch statement failed; isolating the rows at fault');
        careful = true;
      }
    }
    return expandResults(batch.length, plan.segments, plan.results);
  }

  /**
   * Brings every target table in line with the batch (create, evolve). A table that cannot be used
   * fails its changes; only transport failures throw.
   */
  private async prepare(client: pg.ClientBase, plan: BatchPlan, mode: WriteMode): Promise<Metas> {
    const metas: Metas = new Map();
    for (const id of [...plan.needs.keys()].sort()) {
      const need = plan.needs.get(id)!;
      try {
        const { meta, missing } = await this.options.catalog.ensure(client, need, mode === 'nested');
        metas.set(id, meta);
        if (missing.size === 0) continue;
        for (const change of need.changes) {
          const absent = change.shape?.columns.filter((c) => missing.has(c));
          if (!absent?.length) continue;
          this.fail(
            change,
            `cannot upsert into ${need.ref.qualified} key ${describeKey(change)}: column ${absent.join(', ')} ` +
              'does not exist and evolve is off',
            'PG_COLUMN_MISSING',
          );
        }
      } catch (err) {
        const { code, message } = tableFailure(err, need.ref);
        for (const change of need.changes) this.fail(change, message, code, err);
      }
    }
    for (const [id, ref] of plan.truncated) {
      const known = metas.get(id);
      try {
        const meta = known?.truncates ? known : await this.options.catalog.prepareTruncate(client, ref, mode === 'nested');
        if (meta) metas.set(id, meta);
      } catch (err) {
        const { code, message } = tableFailure(err, ref);
        // Every change of the table in this batch fails with its truncate: none may move across it.
        metas.delete(id);
        for (const unit of plan.units) {
          if (unit.ref.id !== id) continue;
          if (unit.kind === 'truncate') unit.results[0] = failure(this.options.sink, `cannot truncate ${ref.qualified}: ${message}`, code, unit.event, err);
          else for (const change of unit.changes) this.fail(change, message, code, err);
        }
      }
    }
    return metas;
  }

  /** Units with the changes still to write; a truncate with nothing to do (see prepareTruncate) is done. */
  private pending(units: readonly Unit[], metas: Metas): Unit[] {
    const out: Unit[] = [];
    for (const unit of units) {
      if (!metas.has(unit.ref.id)) continue;
      if (unit.kind === 'truncate') {
        out.push(unit);
        continue;
      }
      const changes = unit.changes.filter((c) => c.results[c.slot]!.ok);
      if (changes.length > 0) out.push({ ...unit, changes });
    }
    return out;
  }

  private async transaction(client: pg.ClientBase, units: readonly Unit[], metas: Metas, careful: boolean, mode: WriteMode): Promise<void> {
    if (units.length === 0) return;
    const scope = SCOPE[mode];
    if (!careful) {
      // The whole batch in one round trip: node-postgres does not pipeline, so BEGIN, a statement
      // per table and shape, and COMMIT would each wait for a reply and then for a turn of a busy
      // event loop. Several statements in one simple query run as one implicit transaction; in the
      // caller's transaction they run between a savepoint and its release.
      const text = this.batchText(units, metas);
      if (text === undefined) return;
      if (text !== null) {
        try {
          await client.query(mode === 'own' ? text : `${scope.begin};\n${text};\n${scope.commit}`);
        } catch (err) {
          if (mode === 'nested') await client.query(scope.rollback).catch(() => undefined);
          throw err;
        }
        return;
      }
    }
    await client.query(scope.begin);
    try {
      for (const unit of units) {
        if (careful) await this.isolate(client, unit, unit.kind === 'truncate' ? [] : unit.changes, metas);
        else await this.execute(client, unit, unit.kind === 'truncate' ? [] : unit.changes, metas);
      }
      await client.query(scope.commit);
    } catch (err) {
      await client.query(scope.rollback).catch(() => undefined);
      throw err;
    }
  }

  /** Runs a unit (or part of its rows) under a savepoint; on a row-caused failure, halves and recurses. */
  private async isolate(client: pg.ClientBase, unit: Unit, changes: readonly Change[], metas: Metas): Promise<void> {
    await client.query('SAVEPOINT cdc_unit');
    try {
      await this.execute(client, unit, changes, metas);
      await client.query('RELEASE SAVEPOINT cdc_unit');
      return;
    } catch (err) {
      if (isRetriable(err) || !(err instanceof pg.DatabaseError)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT cdc_unit; RELEASE SAVEPOINT cdc_unit');
      if (unit.kind === 'truncate') {
        unit.results[0] = failure(
          this.options.sink,
          `cannot truncate ${unit.ref.qualified}: ${describeDbError(err)}`,
          `PG_${sqlState(err)}`,
          unit.event,
          err,
        );
        return;
      }
      if (changes.length > 1 && isRowError(err)) {
        const mid = changes.length >>> 1;
        await this.isolate(client, unit, changes.slice(0, mid), metas);
        await this.isolate(client, unit, changes.slice(mid), metas);
        return;
      }
      const verb = unit.kind === 'upsert' ? 'upsert into' : 'delete from';
      for (const change of changes) {
        this.fail(change, `cannot ${verb} ${unit.ref.qualified} key ${describeKey(change)}: ${describeDbError(err)}`, `PG_${sqlState(err)}`, err);
      }
    }
  }

  /**
   * Every unit's statement with its values inlined, `;`-separated; undefined when nothing is left to
   * write; null when a value holds a NUL character. The query text travels as a C string, so a NUL
   * would cut it short (a protocol violation that costs the connection): such a batch takes the
   * bound-parameter path, where the server refuses that row alone (22021).
   */
  private batchText(units: readonly Unit[], metas: Metas): string | undefined | null {
    const statements: string[] = [];
    for (const unit of units) {
      const meta = metas.get(unit.ref.id)!;
      if (unit.kind === 'truncate') {
        const truncate = truncateSql(meta, this.options.positionColumn, literal(encodePosition(unit.event.position)));
        if (truncate.lock) statements.push(truncate.lock);
        statements.push(...truncate.writes);
        continue;
      }
      // Only truncates reach a target that does not exist.
      if (meta.absent) continue;
      const params = this.encode(meta, unit, unit.changes);
      if (!params) continue;
      if (params.some((p) => p.includes('\u0000'))) return null;
      const ref = inlineParams(params);
      const { positionColumn } = this.options;
      statements.push(
        unit.kind === 'upsert'
          ? upsertSql(meta, unit.shape.columns, unit.shape.key.columns, positionColumn, ref)
          : deleteSql(meta, unit.key.columns, positionColumn, ref),
      );
    }
    return statements.length === 0 ? undefined : statements.join(';\n');
  }

  private async execute(client: pg.ClientBase, unit: Unit, changes: readonly Change[], metas: Metas): Promise<void> {
    const meta = metas.get(unit.ref.id)!;
    if (unit.kind === 'truncate') {
      const truncate = truncateSql(meta, this.options.positionColumn, '$1');
      if (truncate.lock) await client.query(truncate.lock);
      for (const sql of truncate.writes) await client.query(sql, [encodePosition(unit.event.position)]);
      return;
    }
    const sql = this.sql(meta, unit);
    // Rows go in chunks, each encoded while the server still works on the previous one; the first
    // chunk is small, so that the server starts early.
    let running: Promise<unknown> | undefined;
    for (let start = 0, size = FIRST_CHUNK_ROWS; start < changes.length; start += size, size = CHUNK_ROWS) {
      const params = this.encode(meta, unit, changes.slice(start, start + size));
      await running;
      running = params ? client.query(sql, params) : undefined;
    }
    await running;
  }

  /** The text[] literals of a statement's parameters; undefined when no row could be encoded. */
  private encode(meta: TableMeta, unit: RowUnit, changes: readonly Change[]): string[] | undefined {
    const shape = unit.kind === 'upsert' ? unit.shape : undefined;
    const columns = unit.kind === 'upsert' ? unit.shape.columns : unit.key.columns;
    const codecs = columns.map((c) => meta.columns.get(c)?.codec ?? TEXT);
    // Each column's literal is appended to row by row; a row is encoded into `scratch` first so
    // that a value that cannot be encoded fails its row alone.
    const literals = columns.map(() => '');
    const scratch = new Array<string | null>(columns.length);
    let positions = '';
    let n = 0;
    for (const change of changes) {
      try {
        if (shape) {
          // Inlined columnValue(): this loop runs for every value of the batch.
          const after = change.event.after!;
          const { source, fromKey } = shape;
          for (let i = 0; i < source.length; i++) scratch[i] = encodeValue(after[source[i]!], codecs[i]!);
          for (let j = 0; j < fromKey.length; j++) {
            scratch[source.length + j] = encodeValue(change.keyValues[fromKey[j]!], codecs[source.length + j]!);
          }
        } else {
          for (let i = 0; i < columns.length; i++) scratch[i] = encodeValue(change.keyValues[i], codecs[i]!);
        }
      } catch (err) {
        this.fail(change, `cannot encode a value for ${unit.ref.qualified} key ${describeKey(change)}: ${String(err)}`, 'PG_ENCODE', err);
        continue;
      }
      const sep = n === 0 ? '' : ',';
      for (let i = 0; i < columns.length; i++) literals[i] += sep + arrayElement(scratch[i] ?? null);
      positions += `${sep}"${change.position}"`;
      n++;
    }
    return n === 0 ? undefined : [...literals, positions].map((l) => `{${l}}`);
  }

  /** Statement text per table metadata and shape, built once. */
  private sql(meta: TableMeta, unit: RowUnit): string {
    let cache = this.statements.get(meta);
    if (!cache) {
      cache = new Map();
      this.statements.set(meta, cache);
    }
    const shape = unit.kind === 'upsert' ? unit.shape : unit.key;
    let text = cache.get(shape);
    if (text === undefined) {
      text =
        unit.kind === 'upsert'
          ? upsertSql(meta, unit.shape.columns, unit.shape.key.columns, this.options.positionColumn)
          : deleteSql(meta, unit.key.columns, this.options.positionColumn);
      cache.set(shape, text);
    }
    return text;
  }

  private fail(change: Change, message: string, code: string, cause?: unknown): void {
    change.results[change.slot] = failure(this.options.sink, message, code, change.event, cause);
  }
}

/** A target that cannot be used, as a record error's code and message; rethrows what may clear up. */
function tableFailure(err: unknown, ref: TargetRef): { code: string; message: string } {
  if (err instanceof TableProblem) return { code: err.code, message: err.message };
  if (err instanceof pg.DatabaseError && !isRetriable(err)) {
    return { code: `PG_${sqlState(err) ?? 'ERROR'}`, message: `cannot prepare ${ref.qualified}: ${describeDbError(err)}` };
  }
  throw err;
}
