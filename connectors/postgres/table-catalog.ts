import type { Logger } from 'pino';
import type pg from 'pg';
import { codecFor, type Codec } from './column-types.ts';
import { quoteIdent } from './identifiers.ts';
import { sqlState } from './classify.ts';

/** A target table and its tombstone side table, names already rendered and clipped. */
export interface TargetRef {
  /** `<schema>\0<table>`: the cache key. */
  readonly id: string;
  readonly schema: string;
  readonly table: string;
  readonly tombstone: string;
  /** Quoted, schema-qualified names for SQL text. */
  readonly qualified: string;
  readonly tombstoneQualified: string;
  /** The schema's table of truncate watermarks (TRUNCATES_TABLE). */
  readonly truncatesQualified: string;
}

export interface ColumnMeta {
  readonly name: string;
  /** format_type(): usable in a cast, quoted and qualified when needed. */
  readonly type: string;
  readonly codec: Codec;
  /** Values can travel as a `<type>[]` parameter: not an array themselves, and the type has an array type. */
  readonly typedParam: boolean;
}

export interface TableMeta {
  readonly ref: TargetRef;
  readonly columns: ReadonlyMap<string, ColumnMeta>;
  /** Column sets of the valid, non-partial unique indexes (the primary key among them). */
  readonly uniqueKeys: readonly (readonly string[])[];
  /** Undefined while the tombstone table does not exist. */
  readonly tombstoneColumns: ReadonlyMap<string, ColumnMeta> | undefined;
  /** The schema's truncate watermark table exists. */
  readonly truncates: boolean;
  /** The target does not exist (yet): only a truncate's watermark can be written for it. */
  readonly absent?: true;
}

/** What a batch will write into one target. */
export interface TableNeed {
  readonly ref: TargetRef;
  /** Source table id, for error messages that tell which `tables.<id>` to fix. */
  readonly sourceId: string;
  readonly keyColumns: readonly string[];
  /** Every column the batch writes, keys included. */
  readonly columns: ReadonlySet<string>;
  /** The type to create a column with (asked only for columns the table lacks). */
  typeOf(column: string): string;
}

export interface EnsureResult {
  readonly meta: TableMeta;
  /** Columns the table lacks and that may not be added (evolve off): rows that set them fail. */
  readonly missing: ReadonlySet<string>;
}

export interface CatalogOptions {
  readonly autoCreate: boolean;
  readonly evolve: boolean;
  readonly positionColumn: string;
  readonly log: Logger;
}

/** A target table the batch cannot use as configured: every change bound for it fails, permanently. */
export class TableProblem extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'TableProblem';
    this.code = code;
  }
}

/** Column of the tombstone table saying when the delete was recorded, for the cleanup. */
export const DELETED_AT_COLUMN = '__cdc_deleted_at';

/**
 * Per target schema: the position of the last truncate of each target table (`target` is the table
 * name). An upsert not newer than its table's watermark is skipped, as a tombstone skips one key: a
 * replay from before a truncate must not bring back the rows it removed.
 */
export const TRUNCATES_TABLE = '__cdc_truncates';

/** The watermark table's DDL (the position column is the sink's). */
export function truncatesDdl(qualified: string, positionColumn: string): string {
  return (
    `CREATE TABLE IF NOT EXISTS ${qualified} (target text PRIMARY KEY, ${quoteIdent(positionColumn)} text COLLATE "C" NOT NULL, ` +
    'truncated_at timestamptz NOT NULL DEFAULT now())'
  );
}

/** Errors of two sinks (or two batches) creating the same object at once: look again and go on. */
const DDL_RACE = new Set(['42P06', '42P07', '42701', '42710', '23505']);

interface DdlPlan {
  readonly createTable: boolean;
  readonly addPosition: boolean;
  readonly createTombstone: boolean;
  readonly createTruncates: boolean;
  readonly addColumns: readonly string[];
  readonly missing: ReadonlySet<string>;
}

const NOTHING: ReadonlySet<string> = new Set();

/**
 * Metadata of the target tables, cached per process, and the DDL that makes a table fit a batch
 * (create, add columns, add the position column and the tombstone table). DDL for one table runs
 * under a per-table lock so that concurrent batches do not race each other; races with other
 * processes are caught by IF NOT EXISTS and a second look. Inside a caller's transaction (`nested`)
 * each DDL attempt runs under a savepoint, so that its failure leaves that transaction usable, and
 * what it changed is not cached: the caller may still roll it back.
 */
export class TableCatalog {
  private readonly tables = new Map<string, TableMeta>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly options: CatalogOptions) {}

  /** Tables this process has seen, for the tombstone cleanup. */
  known(): TableMeta[] {
    return [...this.tables.values()];
  }

  invalidate(ref: TargetRef): void {
    this.tables.delete(ref.id);
  }

  /** The table's metadata, or undefined when it does not exist. */
  async lookup(client: pg.ClientBase, ref: TargetRef): Promise<TableMeta | undefined> {
    return this.tables.get(ref.id) ?? (await this.load(client, ref));
  }

  /**
   * Makes the table fit the batch, as far as the options allow. Throws a TableProblem when
   * it cannot be used at all (missing with auto_create off, no unique index on the key…).
   */
  async ensure(client: pg.ClientBase, need: TableNeed, nested = false): Promise<EnsureResult> {
    const cached = this.tables.get(need.ref.id);
    if (cached) {
      const plan = this.plan(cached, need);
      if (!hasDdl(plan)) return { meta: cached, missing: plan.missing };
    }
    return this.serialized(need.ref.id, () => this.ensureLocked(client, need, nested));
  }

  private async ensureLocked(client: pg.ClientBase, need: TableNeed, nested: boolean): Promise<EnsureResult> {
    let changed = false;
    for (let attempt = 1; ; attempt++) {
      const meta = await this.load(client, need.ref, !(nested && changed));
      const plan = this.plan(meta, need);
      if (meta && !hasDdl(plan)) return { meta, missing: plan.missing };
      // The DDL ran and still the table does not fit: another relation has its name (CREATE TABLE IF NOT EXISTS skips a view).
      if (attempt > 3) this.fail(`${need.ref.qualified} is not a table this sink can use: another relation of that name?`, 'PG_TABLE_UNUSABLE');
      try {
        await guarded(client, nested, () => this.apply(client, need, meta, plan, !nested));
        changed = true;
      } catch (err) {
        const state = sqlState(err);
        if (attempt < 3 && state && DDL_RACE.has(state)) continue;
        throw err;
      }
    }
  }

  private plan(meta: TableMeta | undefined, need: TableNeed): DdlPlan {
    const { autoCreate, evolve, positionColumn } = this.options;
    const target = need.ref.qualified;
    if (!meta) {
      if (!autoCreate) this.fail(`table ${target} does not exist and auto_create is off`, 'PG_TABLE_MISSING');
      return { createTable: true, addPosition: false, createTombstone: true, createTruncates: true, addColumns: [], missing: NOTHING };
    }
    const keyMissing = need.keyColumns.filter((k) => !meta.columns.has(k));
    if (keyMissing.length > 0) {
      this.fail(`table ${target} has no key column ${keyMissing.map(quoteIdent).join(', ')}`, 'PG_KEY_MISMATCH');
    }
    if (!meta.uniqueKeys.some((cols) => sameSet(cols, need.keyColumns))) {
      this.fail(
        `table ${target} has no primary key or unique index on (${need.keyColumns.map(quoteIdent).join(', ')}); ` +
          `add one, or set tables."${need.sourceId}".key_columns`,
        'PG_KEY_MISMATCH',
      );
    }
    const bookkeeping = autoCreate || evolve;
    const addPosition = !meta.columns.has(positionColumn);
    if (addPosition && !bookkeeping) {
      this.fail(
        `table ${target} lacks the position column ${quoteIdent(positionColumn)} and auto_create and evolve are off; ` +
          `run ALTER TABLE ${target} ADD COLUMN ${quoteIdent(positionColumn)} text COLLATE "C"`,
        'PG_NO_POSITION_COLUMN',
      );
    }
    const createTombstone = meta.tombstoneColumns === undefined;
    if (createTombstone && !bookkeeping) {
      this.fail(
        `tombstone table ${need.ref.tombstoneQualified} does not exist and auto_create and evolve are off; ` +
          'create it (key columns, the position column and ' +
          `${DELETED_AT_COLUMN} timestamptz) or turn on evolve`,
        'PG_NO_TOMBSTONE_TABLE',
      );
    }
    if (meta.tombstoneColumns && need.keyColumns.some((k) => !meta.tombstoneColumns?.has(k))) {
      this.fail(`tombstone table ${need.ref.tombstoneQualified} does not have the key columns of ${target}`, 'PG_KEY_MISMATCH');
    }
    const absent = [...need.columns].filter((c) => !meta.columns.has(c));
    return {
      createTable: false,
      addPosition,
      createTombstone,
      // Without it upserts skip the watermark check; a truncate then needs it (prepareTruncate).
      createTruncates: !meta.truncates && bookkeeping,
      addColumns: evolve ? absent : [],
      missing: evolve ? NOTHING : new Set(absent),
    };
  }

  private async apply(client: pg.ClientBase, need: TableNeed, meta: TableMeta | undefined, plan: DdlPlan, cache: boolean): Promise<void> {
    const { ref } = need;
    const log = this.options.log;
    const pos = quoteIdent(this.options.positionColumn);
    if (plan.createTable) {
      await ensureSchema(client, ref.schema);
      const columns = [...new Set([...need.keyColumns, ...need.columns])].filter((c) => c !== this.options.positionColumn);
      const defs = columns.map((c) => `${quoteIdent(c)} ${need.typeOf(c)}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${ref.qualified} (${[...defs, `${pos} text COLLATE "C"`].join(', ')}, ` +
          `PRIMARY KEY (${need.keyColumns.map(quoteIdent).join(', ')}))`,
      );
      log.info({ table: ref.qualified, columns: columns.length }, 'created target table');
    } else {
      const adds = plan.addColumns.map((c) => `ADD COLUMN IF NOT EXISTS ${quoteIdent(c)} ${need.typeOf(c)}`);
      if (plan.addPosition) adds.push(`ADD COLUMN IF NOT EXISTS ${pos} text COLLATE "C"`);
      if (adds.length > 0) {
        await client.query(`ALTER TABLE ${ref.qualified} ${adds.join(', ')}`);
        log.info({ table: ref.qualified, added: plan.addColumns, position: plan.addPosition }, 'added columns to target table');
      }
    }
    if (plan.createTombstone) {
      // Key types come from the target as it is now (it may have existed with its own types).
      const current = plan.createTable || !meta ? await this.load(client, ref, cache) : meta;
      const keyDefs = need.keyColumns.map((k) => `${quoteIdent(k)} ${current?.columns.get(k)?.type ?? need.typeOf(k)} NOT NULL`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${ref.tombstoneQualified} (${keyDefs.join(', ')}, ${pos} text COLLATE "C" NOT NULL, ` +
          `${quoteIdent(DELETED_AT_COLUMN)} timestamptz NOT NULL DEFAULT now(), ` +
          `PRIMARY KEY (${need.keyColumns.map(quoteIdent).join(', ')}))`,
      );
      log.info({ table: ref.tombstoneQualified }, 'created tombstone table');
    }
    if (plan.createTruncates) {
      await client.query(truncatesDdl(ref.truncatesQualified, this.options.positionColumn));
    }
  }

  /**
   * A truncate records its watermark: the table for it must exist, even when the target does not
   * (its truncate may come before older changes, from another partition). Creates it when
   * bookkeeping is allowed; otherwise a TableProblem that says how. Undefined: nothing to do (no
   * target, and auto_create off: no older change can create one).
   */
  async prepareTruncate(client: pg.ClientBase, ref: TargetRef, nested = false): Promise<TableMeta | undefined> {
    return this.serialized(ref.id, async () => {
      const meta = await this.load(client, ref);
      if (meta?.truncates) return meta;
      const absent: TableMeta = { ref, columns: new Map(), uniqueKeys: [], tombstoneColumns: undefined, truncates: true, absent: true };
      if (!meta && (await relationOid(client, ref.schema, TRUNCATES_TABLE)) !== undefined) return absent;
      if (!meta && !this.options.autoCreate) return undefined;
      const ddl = truncatesDdl(ref.truncatesQualified, this.options.positionColumn);
      if (!this.options.autoCreate && !this.options.evolve) {
        this.fail(`truncate watermark table ${ref.truncatesQualified} does not exist and auto_create and evolve are off; run ${ddl}`, 'PG_NO_TRUNCATES_TABLE');
      }
      await guarded(client, nested, async () => {
        if (!meta) await ensureSchema(client, ref.schema);
        await client.query(ddl);
      });
      return (await this.load(client, ref, !nested)) ?? absent;
    });
  }

  /** `cache` false: what the caller's open transaction sees, which it may still roll back. */
  private async load(client: pg.ClientBase, ref: TargetRef, cache = true): Promise<TableMeta | undefined> {
    const oid = await relationOid(client, ref.schema, ref.table);
    if (oid === undefined) {
      this.tables.delete(ref.id);
      return undefined;
    }
    // One connection runs one query at a time: sequential on purpose.
    const tombOid = await relationOid(client, ref.schema, ref.tombstone);
    const columns = await loadColumns(client, oid);
    const uniqueKeys = await loadUniqueKeys(client, oid);
    const tombstoneColumns = tombOid === undefined ? undefined : await loadColumns(client, tombOid);
    const truncates = (await relationOid(client, ref.schema, TRUNCATES_TABLE)) !== undefined;
    const meta: TableMeta = { ref, columns, uniqueKeys, tombstoneColumns, truncates };
    if (cache) this.tables.set(ref.id, meta);
    return meta;
  }

  private async serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  private fail(message: string, code: string): never {
    throw new TableProblem(message, code);
  }
}

/** Runs DDL under a savepoint when in the caller's transaction: a failure must not leave that transaction aborted. */
async function guarded<T>(client: pg.ClientBase, nested: boolean, fn: () => Promise<T>): Promise<T> {
  if (!nested) return fn();
  await client.query('SAVEPOINT cdc_ddl');
  try {
    const out = await fn();
    await client.query('RELEASE SAVEPOINT cdc_ddl');
    return out;
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT cdc_ddl; RELEASE SAVEPOINT cdc_ddl').catch(() => undefined);
    throw err;
  }
}

function hasDdl(plan: DdlPlan): boolean {
  return plan.createTable || plan.addPosition || plan.createTombstone || plan.createTruncates || plan.addColumns.length > 0;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

async function ensureSchema(client: pg.ClientBase, schema: string): Promise<void> {
  const exists = await client.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [schema]);
  // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists.
  if (exists.rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
}

async function relationOid(client: pg.ClientBase, schema: string, table: string): Promise<number | undefined> {
  const res = await client.query<{ oid: number }>(
    `SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, table],
  );
  return res.rows[0]?.oid;
}

async function loadColumns(client: pg.ClientBase, oid: number): Promise<Map<string, ColumnMeta>> {
  // Domains are written like their base type; arrays by their element type.
  const res = await client.query<{ name: string; type: string; typname: string; elem: string | null; typed: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, bt.typname::text AS typname,
            et.typname::text AS elem, (t.typarray <> 0 AND et.oid IS NULL) AS typed
     FROM pg_catalog.pg_attribute a
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
     LEFT JOIN pg_catalog.pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum`,
    [oid],
  );
  return new Map(
    res.rows.map((r) => [r.name, { name: r.name, type: r.type, codec: codecFor(r.typname, r.elem), typedParam: r.typed }]),
  );
}

async function loadUniqueKeys(client: pg.ClientBase, oid: number): Promise<string[][]> {
  const res = await client.query<{ cols: string[] }>(
    `SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
     FROM pg_catalog.pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
       AND k.ord <= i.indnkeyatts
     GROUP BY i.indexrelid`,
    [oid],
  );
  return res.rows.map((r) => r.cols);
}
