import type pg from 'pg';
import type { Row } from '../model/change-event.ts';
import { jsonWithBigints } from '../model/serialize.ts';
import type { JsonValue } from './core/aggregation.ts';
import { ensureKeyedStateSchema, KeyedStateStore } from './keyed-state-store.ts';
import type { TriggerState } from './core/trigger.ts';
import { RowRaceError } from './core/errors.ts';
import { GroupCache } from './group-cache.ts';

/**
 * View state in PostgreSQL: row images, group aggregates, the input offsets applied per partition,
 * truncate watermarks and the outbox of results. Every batch changes them in one transaction; rows
 * are locked in a fixed order (offsets, then row images, then groups, each sorted by key), so two
 * transactions touching the same groups wait for each other instead of deadlocking.
 */

export interface StoredRow {
  /** Encoded source position (byte order = position order); null for a placeholder never written. */
  readonly pos: string | null;
  /** Null after a delete: the row is gone, its position stays as a tombstone against older replays. */
  readonly image: Row | null;
  /**
   * The image of a row whose primary key changed, kept after the delete of the old key: the create of
   * the new key (same position) sends unchanged TOASTed columns as placeholders, filled from it.
   */
  readonly moved?: Row | null;
}

export interface StoredGroup {
  readonly key: Row;
  readonly rows: number;
  readonly state: Record<string, JsonValue>;
  /** emit: final: the window's result has been written (later changes within grace are corrections). A global window: it has been emitted. */
  readonly fired: boolean;
  /** A global window's trigger. */
  readonly trigger: TriggerState | null;
}

/** A session or sliding window of one key, as stored. */
export interface StoredWindow extends StoredGroup {
  readonly gid: string;
  readonly kid: string;
  readonly start: number;
  readonly end: number;
}

/** One change of a sliding-window view, kept while a window it belongs to may still be created. */
export interface StoredEvent {
  readonly t: number;
  readonly values: readonly unknown[];
}

/** A row image to save, and whether it was in the store when locked (else it is inserted). */
export interface RowWrite extends StoredRow {
  readonly existed: boolean;
}

export interface GroupWrite {
  readonly gid: string;
  readonly key: Row;
  readonly rows: number;
  readonly state: Record<string, JsonValue>;
  /** Where its window closes (exclusive): emit final's due groups are found by it. */
  readonly windowEnd: number | undefined;
  readonly fired: boolean;
  /** Session and sliding windows: the key without the window, and the window's start, to find a key's windows by time. */
  readonly kid?: string | undefined;
  readonly windowStart?: number | undefined;
  readonly trigger?: TriggerState | null | undefined;
}

/** One outbox row: the results of one batch (up to OUTBOX_ENTRY_RESULTS), in order. */
export interface OutboxEntry {
  readonly id: string;
  readonly results: readonly unknown[];
}

/**
 * A batch's results travel as one outbox row (one insert and one delete, not one per result), in
 * rows of at most this many.
 */
const OUTBOX_ENTRY_RESULTS = 5_000;
/** Outbox rows locked per claim, of which as many are delivered as fit the claim's limit of results. */
const OUTBOX_CLAIM_ROWS = 64;

const q = (ident: string) => `"${ident.replace(/"/g, '""')}"`;

/**
 * Images, group states and outbox payloads are stored as JSON text, not jsonb: they are only ever
 * read back whole, and jsonb's parse on every write and rendering on every read cost the server
 * more than the rest of a batch's statements. Columns SQL looks into (gkey, trigger_state) stay jsonb.
 */
const TEXT_COLUMNS = [
  ['view_rows', 'image'],
  ['view_groups', 'state'],
  ['view_outbox', 'payload'],
] as const;

/** Room on each page for the next version of a row, so that rewriting an image or a group stays on its page (a HOT update). */
const FILLFACTOR = 80;

const parseJson = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));

/** Stored JSON: int64 beyond 2^53 as decimal text (the aggregations read it exactly). */
const toJson = jsonWithBigints;

/** An outbox row's results, with the column lists they share written once (a batch's results all carry the same). */
function packEntry(results: readonly unknown[]): string {
  const columns: unknown[] = [];
  const packed = results.map((r) => {
    if (r === null || typeof r !== 'object' || !('columns' in r) || r.columns === undefined) return r;
    let i = columns.indexOf(r.columns);
    if (i < 0) i = columns.push(r.columns) - 1;
    return { ...r, columns: i };
  });
  return toJson({ columns, results: packed });
}

function unpackEntry(parsed: unknown): unknown[] {
  const entry = parsed as { columns?: unknown; results?: unknown } | null;
  // A row of an earlier version holds one result.
  if (entry === null || !Array.isArray(entry.results) || !Array.isArray(entry.columns)) return [parsed];
  const columns = entry.columns as unknown[];
  return (entry.results as unknown[]).map((r) => {
    const c = (r as { columns?: unknown } | null)?.columns;
    return typeof c === 'number' ? { ...(r as object), columns: columns[c] } : r;
  });
}

/**
 * The state tables' layout: bumped with every change to createSchema or upgrade. A start on a
 * schema already at it runs no DDL, so it takes no lock that running instances' batches wait for.
 */
const STATE_SCHEMA_VERSION = 1;

/** Runs of ensureSchema a deadlock may end before the error goes up. */
const SCHEMA_ATTEMPTS = 5;

export class StateStore {
  readonly s: string;
  private readonly schema: string;
  /** Group states this process committed (see GroupCache): the view sink tells it when a transaction ends. */
  readonly groupCache = new GroupCache();
  /** Offset rows (view, topic, partition) this process saw: their placeholder insert is skipped. */
  private readonly offsetRows = new Set<string>();

  constructor(schema: string) {
    this.schema = schema;
    this.s = q(schema);
  }

  /**
   * Creates the state tables; an advisory lock keeps two instances starting together from racing.
   * Its DDL locks tables that running instances' batches lock too, in another order: PostgreSQL may
   * end it as a deadlock's victim (40P01), and then it runs again rather than stop the router.
   */
  async ensureSchema(client: pg.PoolClient): Promise<void> {
    if ((await this.schemaVersion(client)) === STATE_SCHEMA_VERSION) return;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.createSchema(client);
      } catch (err) {
        if ((err as { code?: unknown } | null)?.code !== '40P01' || attempt >= SCHEMA_ATTEMPTS) throw err;
      }
    }
  }

  /** The layout version recorded in the schema; 0 before there is one (a new schema, or one made before versions were kept). */
  private async schemaVersion(client: pg.PoolClient): Promise<number> {
    const table = await client.query<{ t: string | null }>(`SELECT to_regclass($1)::text AS t`, [`${this.s}.view_schema`]);
    if (table.rows[0]?.t === null || table.rows[0]?.t === undefined) return 0;
    const res = await client.query<{ version: number }>(`SELECT version FROM ${this.s}.view_schema`);
    return res.rows[0]?.version ?? 0;
  }

  private async createSchema(client: pg.PoolClient): Promise<void> {
    const s = this.s;
    await client.query('BEGIN');
    try {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`cdc-router-state:${s}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_offsets (
        view text NOT NULL, topic text NOT NULL, kpartition integer NOT NULL, next_offset bigint NOT NULL,
        PRIMARY KEY (view, topic, kpartition))`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_rows (
        view text NOT NULL, pk text NOT NULL, pos text COLLATE "C", image text, PRIMARY KEY (view, pk)) WITH (fillfactor = ${FILLFACTOR})`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_moved (
        view text NOT NULL, pos text COLLATE "C" NOT NULL, image text NOT NULL, PRIMARY KEY (view, pos))`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_groups (
        view text NOT NULL, gid text NOT NULL, gkey jsonb NOT NULL, rows bigint NOT NULL, state text NOT NULL,
        PRIMARY KEY (view, gid)) WITH (fillfactor = ${FILLFACTOR})`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_truncates (
        view text PRIMARY KEY, pos text COLLATE "C" NOT NULL)`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_outbox (
        id bigserial PRIMARY KEY, view text NOT NULL, payload text NOT NULL, n integer NOT NULL DEFAULT 1)`);
      await client.query(`ALTER TABLE ${s}.view_outbox ADD COLUMN IF NOT EXISTS n integer NOT NULL DEFAULT 1`);
      // An entry is written once and read once: compressing it costs more than the bytes it saves.
      await client.query(`ALTER TABLE ${s}.view_outbox ALTER COLUMN payload SET STORAGE EXTERNAL`);
      await client.query(`CREATE INDEX IF NOT EXISTS view_outbox_view ON ${s}.view_outbox (view, id)`);
      await client.query(`CREATE SEQUENCE IF NOT EXISTS ${s}.view_versions`);
      // Event time: a clock per input partition, the view's watermark, and which windows have fired (emit: final).
      await client.query(`ALTER TABLE ${s}.view_offsets ADD COLUMN IF NOT EXISTS clock jsonb`);
      await client.query(`ALTER TABLE ${s}.view_groups ADD COLUMN IF NOT EXISTS window_end bigint`);
      await client.query(`ALTER TABLE ${s}.view_groups ADD COLUMN IF NOT EXISTS fired boolean NOT NULL DEFAULT false`);
      await client.query(`CREATE INDEX IF NOT EXISTS view_groups_due ON ${s}.view_groups (view, window_end) WHERE NOT fired`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_watermarks (view text PRIMARY KEY, watermark_ms bigint NOT NULL)`);
      await ensureKeyedStateSchema(client, s);
      // Session and sliding windows: a key's windows by time, a lock row per key, and a sliding view's recent changes.
      await client.query(`ALTER TABLE ${s}.view_groups ADD COLUMN IF NOT EXISTS kid text`);
      await client.query(`ALTER TABLE ${s}.view_groups ADD COLUMN IF NOT EXISTS window_start bigint`);
      await client.query(`ALTER TABLE ${s}.view_groups ADD COLUMN IF NOT EXISTS trigger_state jsonb`);
      // The transaction that last wrote a group (see GroupCache).
      await client.query(`ALTER TABLE ${s}.view_groups ADD COLUMN IF NOT EXISTS rev bigint NOT NULL DEFAULT 0`);
      await client.query(`CREATE INDEX IF NOT EXISTS view_groups_kid ON ${s}.view_groups (view, kid, window_start) WHERE kid IS NOT NULL`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_keys (view text NOT NULL, kid text NOT NULL, PRIMARY KEY (view, kid))`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_events (
        id bigserial PRIMARY KEY, view text NOT NULL, kid text NOT NULL, t bigint NOT NULL, vals jsonb NOT NULL)`);
      await client.query(`CREATE INDEX IF NOT EXISTS view_events_kid ON ${s}.view_events (view, kid, t)`);
      await client.query(`CREATE INDEX IF NOT EXISTS view_events_t ON ${s}.view_events (view, t)`);
      await this.upgrade(client);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_schema (version integer NOT NULL)`);
      await client.query(`DELETE FROM ${s}.view_schema`);
      await client.query(`INSERT INTO ${s}.view_schema (version) VALUES ($1)`, [STATE_SCHEMA_VERSION]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /** State made by earlier versions: jsonb columns become text, kept images of old keys move to view_moved. */
  private async upgrade(client: pg.PoolClient): Promise<void> {
    const s = this.s;
    const found = await client.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name IN ('view_rows', 'view_groups', 'view_outbox')`,
      [this.schema],
    );
    const type = (t: string, c: string) => found.rows.find((r) => r.table_name === t && r.column_name === c)?.data_type;
    if (type('view_rows', 'moved') !== undefined) {
      await client.query(
        `INSERT INTO ${s}.view_moved (view, pos, image) SELECT view, pos, moved::text FROM ${s}.view_rows WHERE moved IS NOT NULL AND pos IS NOT NULL ON CONFLICT DO NOTHING`,
      );
      await client.query(`ALTER TABLE ${s}.view_rows DROP COLUMN moved`);
    }
    for (const [t, c] of TEXT_COLUMNS) {
      if (type(t, c) === 'jsonb') await client.query(`ALTER TABLE ${s}.${t} ALTER COLUMN ${c} TYPE text USING ${c}::text`);
    }
    for (const t of ['view_rows', 'view_groups']) await client.query(`ALTER TABLE ${s}.${t} SET (fillfactor = ${FILLFACTOR})`);
  }

  /**
   * Locks the offset rows of these partitions (sorted) and returns the next offset to apply for each:
   * a record below it was applied by an earlier transaction (a redelivery) and changes nothing.
   */
  async lockOffsets(
    client: pg.PoolClient,
    view: string,
    partitions: readonly { topic: string; partition: number }[],
  ): Promise<Map<string, bigint>> {
    const sorted = [...partitions].sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
    const id = (p: { topic: string; partition: number }) => `${view}\u0000${partitionKey(p.topic, p.partition)}`;
    // A partition's row, once seen, stays (only a reset deletes it, and then the select misses it).
    const unseen = sorted.filter((p) => !this.offsetRows.has(id(p)));
    if (unseen.length > 0) await this.offsetPlaceholders(client, view, unseen);
    const found = await this.selectOffsets(client, view, sorted);
    const gone = sorted.filter((p) => !found.has(partitionKey(p.topic, p.partition)));
    if (gone.length > 0) {
      await this.offsetPlaceholders(client, view, gone);
      for (const [k, o] of await this.selectOffsets(client, view, gone)) found.set(k, o);
    }
    for (const p of sorted) this.offsetRows.add(id(p));
    return found;
  }

  private async offsetPlaceholders(client: pg.PoolClient, view: string, partitions: readonly { topic: string; partition: number }[]): Promise<void> {
    await client.query(
      `INSERT INTO ${this.s}.view_offsets (view, topic, kpartition, next_offset)
       SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS u(t, p) ON CONFLICT DO NOTHING`,
      [view, partitions.map((p) => p.topic), partitions.map((p) => p.partition)],
    );
  }

  private async selectOffsets(client: pg.PoolClient, view: string, sorted: readonly { topic: string; partition: number }[]): Promise<Map<string, bigint>> {
    const res = await client.query<{ topic: string; kpartition: number; next_offset: string }>(
      `SELECT topic, kpartition, next_offset FROM ${this.s}.view_offsets
       WHERE view = $1 AND (topic, kpartition) IN (SELECT * FROM unnest($2::text[], $3::int[]))
       ORDER BY topic, kpartition FOR UPDATE`,
      [view, sorted.map((p) => p.topic), sorted.map((p) => p.partition)],
    );
    return new Map(res.rows.map((r) => [partitionKey(r.topic, r.kpartition), BigInt(r.next_offset)]));
  }

  async saveOffsets(client: pg.PoolClient, view: string, next: ReadonlyMap<string, bigint>): Promise<void> {
    await this.saveGroups(client, view, [], { offsets: next });
  }

  async truncatePosition(client: pg.PoolClient, view: string): Promise<string | null> {
    const res = await client.query<{ pos: string }>(`SELECT pos FROM ${this.s}.view_truncates WHERE view = $1`, [view]);
    return res.rows[0]?.pos ?? null;
  }

  async saveTruncate(client: pg.PoolClient, view: string, pos: string): Promise<void> {
    await client.query(
      `INSERT INTO ${this.s}.view_truncates (view, pos) VALUES ($1, $2)
       ON CONFLICT (view) DO UPDATE SET pos = GREATEST(${this.s}.view_truncates.pos, EXCLUDED.pos)`,
      [view, pos],
    );
  }

  /**
   * Locks the stored images of these primary keys (sorted). A key not stored yet is not locked:
   * saveRows inserts it, and finds out there when another transaction stored it first. In the same
   * statement: the truncate positions of these scopes (see truncatePosition; one never truncated is absent).
   */
  async lockRowsOf(
    client: pg.PoolClient,
    view: string,
    pks: readonly string[],
    truncateScopes: readonly string[],
  ): Promise<{ rows: Map<string, StoredRow>; truncates: Map<string, string> }> {
    const sorted = [...new Set(pks)].sort();
    if (sorted.length === 0 && truncateScopes.length === 0) return { rows: new Map(), truncates: new Map() };
    // One row per stored image, then one per truncated scope (pk null): FOR UPDATE cannot take a UNION.
    const res = await client.query<{ pk: string | null; pos: string | null; image: string | null; scope: string | null }>(
      `WITH locked AS (
         SELECT pk, pos, image FROM ${this.s}.view_rows WHERE view = $1 AND pk = ANY($2::text[]) ORDER BY pk COLLATE "C" FOR UPDATE)
       SELECT pk, pos, image, NULL::text AS scope FROM locked
       UNION ALL SELECT NULL, pos, NULL, view FROM ${this.s}.view_truncates WHERE view = ANY($3::text[])`,
      [view, sorted, truncateScopes],
    );
    const rows = new Map<string, StoredRow>();
    const truncates = new Map<string, string>();
    for (const r of res.rows) {
      if (r.scope !== null) truncates.set(r.scope, r.pos!);
      else rows.set(r.pk!, { pos: r.pos, image: parseJson<Row>(r.image) });
    }
    return { rows, truncates };
  }

  /** Every stored image of the view, locked: a truncate retracts them all. */
  async lockAllRows(client: pg.PoolClient, view: string): Promise<Map<string, StoredRow>> {
    const res = await client.query<{ pk: string; pos: string | null; image: string | null }>(
      `SELECT pk, pos, image FROM ${this.s}.view_rows WHERE view = $1 ORDER BY pk COLLATE "C" FOR UPDATE`,
      [view],
    );
    return new Map(res.rows.map((r) => [r.pk, { pos: r.pos, image: parseJson<Row>(r.image) }]));
  }

  /**
   * Rewrites the locked images and inserts the new ones, in one statement. A key new to this
   * transaction that another one stored meanwhile (one primary key on two partitions at once) was
   * read as absent: its contributions are wrong, so the whole transaction must be retried (RowRaceError).
   */
  async saveRows(client: pg.PoolClient, view: string, rows: ReadonlyMap<string, RowWrite>): Promise<void> {
    if (rows.size === 0) return;
    const pks: string[] = [];
    const poss: (string | null)[] = [];
    const images: (string | null)[] = [];
    const existed: boolean[] = [];
    const moved: { pos: string; image: string }[] = [];
    let fresh = 0;
    for (const [pk, r] of rows) {
      pks.push(pk);
      poss.push(r.pos);
      images.push(r.image === null ? null : toJson(r.image));
      existed.push(r.existed);
      if (!r.existed) fresh++;
      if (r.moved && r.pos !== null) moved.push({ pos: r.pos, image: toJson(r.moved) });
    }
    const res = await client.query<{ inserted: string }>(
      `WITH u AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[]) AS u(pk, pos, image, existed)),
         up AS (UPDATE ${this.s}.view_rows v SET pos = u.pos, image = u.image FROM u WHERE u.existed AND v.view = $1 AND v.pk = u.pk),
         ins AS (INSERT INTO ${this.s}.view_rows (view, pk, pos, image) SELECT $1, pk, pos, image FROM u WHERE NOT u.existed
                 ON CONFLICT DO NOTHING RETURNING 1)
       SELECT count(*)::text AS inserted FROM ins`,
      [view, pks, poss, images, existed],
    );
    if (Number(res.rows[0]?.inserted ?? 0) < fresh) throw new RowRaceError(view);
    if (moved.length === 0) return;
    await client.query(
      `INSERT INTO ${this.s}.view_moved (view, pos, image) SELECT $1, p, i FROM unnest($2::text[], $3::text[]) AS u(p, i) ON CONFLICT DO NOTHING`,
      [view, moved.map((m) => m.pos), moved.map((m) => m.image)],
    );
  }

  /**
   * The image the old key of a primary-key change left at this position; undefined when that delete
   * is not applied yet. Read without a lock: it never changes once written.
   */
  async movedImage(client: pg.PoolClient, view: string, pos: string): Promise<Row | undefined> {
    const res = await client.query<{ image: string }>(`SELECT image FROM ${this.s}.view_moved WHERE view = $1 AND pos = $2`, [view, pos]);
    return parseJson<Row>(res.rows[0]?.image ?? null) ?? undefined;
  }

  /**
   * Locks the groups (sorted; placeholders for new ones) and returns their state. A group whose
   * stored revision is the one this process last committed comes from the cache, unread.
   */
  async lockGroups(
    client: pg.PoolClient,
    view: string,
    gids: readonly string[],
    windowEnds: ReadonlyMap<string, number | undefined> = new Map(),
  ): Promise<Map<string, StoredGroup | null>> {
    const sorted = [...new Set(gids)].sort();
    if (sorted.length === 0) return new Map();
    const cached = sorted.map((g) => this.groupCache.get(view, g));
    await this.placeholders(
      client,
      view,
      sorted.filter((_, i) => cached[i] === undefined),
      windowEnds,
    );
    // Taken now: a transaction committing meanwhile may replace or evict them.
    const known = new Map(sorted.flatMap((g, i) => (cached[i] ? [[g, cached[i]] as const] : [])));
    const res = await client.query<GroupRow & { hit: boolean }>(
      `SELECT g.gid, g.rev = c.rev AS hit, CASE WHEN g.rev = c.rev THEN NULL ELSE g.gkey END AS gkey, g.rows,
              CASE WHEN g.rev = c.rev THEN NULL ELSE g.state END AS state, g.fired, CASE WHEN g.rev = c.rev THEN NULL ELSE g.trigger_state END AS trigger_state
       FROM ${this.s}.view_groups g LEFT JOIN unnest($3::text[], $4::bigint[]) AS c(gid, rev) ON c.gid = g.gid
       WHERE g.view = $1 AND g.gid = ANY($2::text[]) ORDER BY g.gid COLLATE "C" FOR UPDATE OF g`,
      [view, sorted, [...known.keys()], [...known.values()].map((c) => c.rev)],
    );
    const out = new Map(res.rows.map((r) => [r.gid, r.hit ? (known.get(r.gid)?.group ?? null) : storedGroup(r)]));
    // A cached group whose row is gone (the view was reset meanwhile): a placeholder now, locked after the rest.
    const gone = sorted.filter((g) => !out.has(g));
    if (gone.length > 0) {
      this.groupCache.forget(view);
      for (const [gid, g] of await this.lockGroups(client, view, gone, windowEnds)) out.set(gid, g);
    }
    return out;
  }

  /** A placeholder carries its window's end already: saving the group then changes no indexed column (a HOT update). */
  private async placeholders(client: pg.PoolClient, view: string, gids: readonly string[], windowEnds: ReadonlyMap<string, number | undefined>): Promise<void> {
    if (gids.length === 0) return;
    await client.query(
      `INSERT INTO ${this.s}.view_groups (view, gid, gkey, rows, state, window_end)
       SELECT $1, g, 'null'::jsonb, 0, '{}', e FROM unnest($2::text[], $3::bigint[]) AS u(g, e) ON CONFLICT DO NOTHING`,
      [view, gids, gids.map((g) => windowEnds.get(g) ?? null)],
    );
  }

  /** emit: final: groups of windows that ended by the watermark and have not fired, locked (others' locked ones are theirs). */
  async lockDueGroups(client: pg.PoolClient, view: string, watermarkMs: number): Promise<Map<string, StoredGroup>> {
    const res = await client.query<GroupRow>(
      `SELECT gid, gkey, rows, state, fired, trigger_state FROM ${this.s}.view_groups
       WHERE view = $1 AND NOT fired AND window_end <= $2 AND rows > 0 ORDER BY gid COLLATE "C" FOR UPDATE SKIP LOCKED`,
      [view, watermarkMs],
    );
    const out = new Map<string, StoredGroup>();
    for (const r of res.rows) {
      const g = storedGroup(r);
      if (g) out.set(r.gid, g);
    }
    return out;
  }

  /**
   * Locks one row per key (sorted; created when new) for session and sliding windows: a key's
   * windows are found by time, not by id, so two transactions adding to one key must take turns.
   */
  async lockKeys(client: pg.PoolClient, view: string, kids: readonly string[]): Promise<void> {
    const sorted = [...new Set(kids)].sort();
    if (sorted.length === 0) return;
    await client.query(`INSERT INTO ${this.s}.view_keys (view, kid) SELECT $1, k FROM unnest($2::text[]) AS u(k) ON CONFLICT DO NOTHING`, [view, sorted]);
    await client.query(`SELECT kid FROM ${this.s}.view_keys WHERE view = $1 AND kid = ANY($2::text[]) ORDER BY kid COLLATE "C" FOR UPDATE`, [view, sorted]);
  }

  /** The live windows of these keys overlapping [from, to] (both inclusive), locked; their keys must be locked (lockKeys). */
  async lockWindowsOf(
    client: pg.PoolClient,
    view: string,
    ranges: readonly { readonly kid: string; readonly from: number; readonly to: number }[],
  ): Promise<StoredWindow[]> {
    if (ranges.length === 0) return [];
    const res = await client.query<GroupRow & { kid: string; ws: string; we: string }>(
      `SELECT g.gid, g.kid, g.gkey, g.rows, g.state, g.fired, g.trigger_state, g.window_start::text AS ws, (g.gkey->>'window_end') AS we
       FROM ${this.s}.view_groups g JOIN unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(kid, f, t)
         ON g.view = $1 AND g.kid = u.kid AND g.rows > 0 AND g.window_start <= u.t AND (g.gkey->>'window_end')::bigint >= u.f
       ORDER BY g.gid COLLATE "C" FOR UPDATE OF g`,
      [view, ranges.map((r) => r.kid), ranges.map((r) => r.from), ranges.map((r) => r.to)],
    );
    const out: StoredWindow[] = [];
    const seen = new Set<string>();
    for (const r of res.rows) {
      const g = storedGroup(r);
      if (!g || seen.has(r.gid)) continue;
      seen.add(r.gid);
      out.push({ ...g, gid: r.gid, kid: r.kid, start: Number(r.ws), end: Number(r.we) });
    }
    return out;
  }

  /** A sliding view's stored changes of these keys with times in [from, to]; ascending by time. */
  async events(
    client: pg.PoolClient,
    view: string,
    ranges: readonly { readonly kid: string; readonly from: number; readonly to: number }[],
  ): Promise<Map<string, StoredEvent[]>> {
    const out = new Map<string, StoredEvent[]>();
    if (ranges.length === 0) return out;
    const res = await client.query<{ kid: string; t: string; vals: unknown[] }>(
      `SELECT DISTINCT e.id, e.kid, e.t::text AS t, e.vals FROM ${this.s}.view_events e JOIN unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(kid, f, t)
         ON e.view = $1 AND e.kid = u.kid AND e.t BETWEEN u.f AND u.t
       ORDER BY e.kid, t, e.id`,
      [view, ranges.map((r) => r.kid), ranges.map((r) => r.from), ranges.map((r) => r.to)],
    );
    for (const r of res.rows) {
      const list = out.get(r.kid) ?? [];
      list.push({ t: Number(r.t), values: r.vals });
      out.set(r.kid, list);
    }
    for (const list of out.values()) list.sort((a, b) => a.t - b.t);
    return out;
  }

  async addEvents(client: pg.PoolClient, view: string, events: readonly { readonly kid: string; readonly t: number; readonly values: readonly unknown[] }[]): Promise<void> {
    if (events.length === 0) return;
    await client.query(
      `INSERT INTO ${this.s}.view_events (view, kid, t, vals) SELECT $1, k, t, v::jsonb FROM unnest($2::text[], $3::bigint[], $4::text[]) AS u(k, t, v)`,
      [view, events.map((e) => e.kid), events.map((e) => e.t), events.map((e) => toJson(e.values))],
    );
  }

  /** Drops a sliding view's changes older than any window that may still take a change. */
  async pruneEvents(client: pg.PoolClient, view: string, beforeMs: number): Promise<void> {
    await client.query(`DELETE FROM ${this.s}.view_events WHERE view = $1 AND t < $2`, [view, beforeMs]);
  }

  /** A global window with a time trigger: groups with changes not yet emitted, locked (others' locked ones are theirs). */
  async lockPendingTriggers(client: pg.PoolClient, view: string): Promise<Map<string, StoredGroup>> {
    const res = await client.query<GroupRow>(
      `SELECT gid, gkey, rows, state, fired, trigger_state FROM ${this.s}.view_groups
       WHERE view = $1 AND (trigger_state->>'pending')::int > 0 ORDER BY gid COLLATE "C" FOR UPDATE SKIP LOCKED`,
      [view],
    );
    const out = new Map<string, StoredGroup>();
    for (const r of res.rows) {
      const g = storedGroup(r);
      if (g) out.set(r.gid, g);
    }
    return out;
  }

  /** Each partition's event-time clock (all of the view's, whoever owns them: the watermark spans the group). */
  async clocks(client: pg.PoolClient, view: string): Promise<Map<string, JsonValue>> {
    const res = await client.query<{ topic: string; kpartition: number; clock: JsonValue }>(
      `SELECT topic, kpartition, clock FROM ${this.s}.view_offsets WHERE view = $1 AND clock IS NOT NULL`,
      [view],
    );
    return new Map(res.rows.map((r) => [partitionKey(r.topic, r.kpartition), r.clock]));
  }

  async saveClocks(client: pg.PoolClient, view: string, clocks: ReadonlyMap<string, object>): Promise<void> {
    if (clocks.size === 0) return;
    const entries = [...clocks].map(([k, c]) => ({ ...splitPartitionKey(k), c: toJson(c) }));
    await client.query(
      `UPDATE ${this.s}.view_offsets v SET clock = u.c::jsonb FROM unnest($2::text[], $3::int[], $4::text[]) AS u(t, p, c)
       WHERE v.view = $1 AND v.topic = u.t AND v.kpartition = u.p`,
      [view, entries.map((e) => e.topic), entries.map((e) => e.partition), entries.map((e) => e.c)],
    );
  }

  async watermark(client: pg.PoolClient, view: string): Promise<number | null> {
    const res = await client.query<{ w: string }>(`SELECT watermark_ms::text AS w FROM ${this.s}.view_watermarks WHERE view = $1`, [view]);
    return res.rows[0] ? Number(res.rows[0].w) : null;
  }

  /** Watermarks only move forward, whichever instance writes last. */
  async saveWatermark(client: pg.PoolClient, view: string, ms: number): Promise<void> {
    await client.query(
      `INSERT INTO ${this.s}.view_watermarks (view, watermark_ms) VALUES ($1, $2)
       ON CONFLICT (view) DO UPDATE SET watermark_ms = GREATEST(${this.s}.view_watermarks.watermark_ms, EXCLUDED.watermark_ms)`,
      [view, ms],
    );
  }

  /**
   * Writes group states. A group with no rows left keeps its row (rows 0, read as absent): deleting
   * it would let a transaction waiting on its lock find no row and lose its contributions. In the
   * same statement (one round trip less each while the groups are locked): `versions` fresh result
   * versions (see nextVersions; the groups are locked by now) and the partitions' next `offsets`
   * (see saveOffsets). Returns the versions.
   */
  async saveGroups(
    client: pg.PoolClient,
    view: string,
    groups: readonly GroupWrite[],
    extra: { readonly versions?: number; readonly offsets?: ReadonlyMap<string, bigint> } = {},
  ): Promise<bigint[]> {
    const live = groups.map((g) => (g.rows > 0 ? g : { ...g, rows: 0, state: {}, fired: false, trigger: null }));
    const offsets = [...(extra.offsets ?? [])].map(([k, o]) => ({ ...splitPartitionKey(k), o: o.toString() }));
    const versions = extra.versions ?? 0;
    if (live.length === 0 && offsets.length === 0 && versions === 0) return [];
    const res = await client.query<{ rev: string; versions: string[] }>(
      `WITH up AS (
         UPDATE ${this.s}.view_groups v SET gkey = u.k::jsonb, rows = u.n, state = u.s, window_end = u.e, fired = u.f,
           kid = COALESCE(u.kid, v.kid), window_start = COALESCE(u.ws, v.window_start), trigger_state = u.tr::jsonb, rev = txid_current()
         FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::boolean[], $8::text[], $9::bigint[], $10::text[])
           AS u(g, k, n, s, e, f, kid, ws, tr)
         WHERE v.view = $1 AND v.gid = u.g),
       off AS (
         UPDATE ${this.s}.view_offsets v SET next_offset = o.o FROM unnest($11::text[], $12::int[], $13::bigint[]) AS o(t, p, o)
         WHERE v.view = $1 AND v.topic = o.t AND v.kpartition = o.p AND v.next_offset < o.o)
       SELECT txid_current()::text AS rev,
         ARRAY(SELECT nextval('${this.s}.view_versions') FROM generate_series(1, $14::int) ORDER BY 1)::text[] AS versions`,
      [
        view,
        live.map((g) => g.gid),
        live.map((g) => toJson(g.key)),
        live.map((g) => g.rows),
        live.map((g) => toJson(g.state)),
        live.map((g) => g.windowEnd ?? null),
        live.map((g) => g.fired),
        live.map((g) => g.kid ?? null),
        live.map((g) => g.windowStart ?? null),
        live.map((g) => (g.trigger ? toJson(g.trigger) : null)),
        offsets.map((e) => e.topic),
        offsets.map((e) => e.partition),
        offsets.map((e) => e.o),
        versions,
      ],
    );
    const row = res.rows[0]!;
    if (live.length > 0) {
      const saved = live.map((g) => ({
        gid: g.gid,
        // The key as read back (an int64 beyond 2^53 as text), so a cached group is what a read would give.
        group: g.rows > 0 ? { key: JSON.parse(toJson(g.key)) as Row, rows: g.rows, state: g.state, fired: g.fired, trigger: g.trigger ?? null } : null,
      }));
      this.groupCache.saved(client, view, row.rev, saved);
    }
    return row.versions.map((v) => BigInt(v));
  }

  /**
   * Versions for results, taken after the groups are locked: a later transaction on the same group
   * waits for this one's commit before it takes its own, so a group's versions only grow.
   */
  async nextVersions(client: pg.PoolClient, n: number): Promise<bigint[]> {
    if (n === 0) return [];
    const res = await client.query<{ v: string }>(`SELECT nextval('${this.s}.view_versions')::text AS v FROM generate_series(1, $1)`, [n]);
    return res.rows.map((r) => BigInt(r.v));
  }

  /**
   * Returns the ids of the outbox rows written. `deliveredIds`: rows delivered earlier, deleted in
   * the same statement (a round trip and a connection less per write than deleting them apart).
   */
  async addToOutbox(client: pg.PoolClient, view: string, payloads: readonly unknown[], deliveredIds: readonly string[] = []): Promise<string[]> {
    if (payloads.length === 0) {
      await this.deleteOutbox(client, deliveredIds);
      return [];
    }
    const chunks: (readonly unknown[])[] = [];
    for (let k = 0; k < payloads.length; k += OUTBOX_ENTRY_RESULTS) chunks.push(payloads.slice(k, k + OUTBOX_ENTRY_RESULTS));
    const res = await client.query<{ id: string }>(
      `WITH gone AS (DELETE FROM ${this.s}.view_outbox WHERE id = ANY($4::bigint[]))
       INSERT INTO ${this.s}.view_outbox (view, payload, n) SELECT $1, p, n FROM unnest($2::text[], $3::int[]) AS u(p, n) RETURNING id::text`,
      [view, chunks.map(packEntry), chunks.map((c) => c.length), deliveredIds],
    );
    return res.rows.map((r) => r.id);
  }

  /**
   * The oldest outbox rows nobody else is delivering, locked until the transaction ends: the first,
   * and the next ones while their results fit in `limit`. `more` says whether rows were left.
   */
  async claimOutbox(client: pg.PoolClient, view: string, limit: number): Promise<{ entries: OutboxEntry[]; more: boolean }> {
    const heads = await client.query<{ id: string; n: number }>(
      `SELECT id::text, n FROM ${this.s}.view_outbox WHERE view = $1 ORDER BY id LIMIT ${OUTBOX_CLAIM_ROWS} FOR UPDATE SKIP LOCKED`,
      [view],
    );
    const ids: string[] = [];
    let total = 0;
    for (const h of heads.rows) {
      if (ids.length > 0 && total + h.n > limit) break;
      ids.push(h.id);
      total += h.n;
    }
    if (ids.length === 0) return { entries: [], more: false };
    const res = await client.query<{ id: string; payload: string }>(
      `SELECT id::text, payload FROM ${this.s}.view_outbox WHERE id = ANY($1::bigint[]) ORDER BY id`,
      [ids],
    );
    const entries = res.rows.map((r) => ({ id: r.id, results: unpackEntry(JSON.parse(r.payload)) }));
    return { entries, more: heads.rows.length > ids.length || heads.rows.length === OUTBOX_CLAIM_ROWS };
  }

  async deleteOutbox(client: pg.ClientBase | pg.Pool, ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await client.query(`DELETE FROM ${this.s}.view_outbox WHERE id = ANY($1::bigint[])`, [ids]);
  }

  /**
   * Drops a view's state (views reset). Its results are deleted downstream: a delete of every group
   * goes to the outbox, with a version above every one written so far.
   */
  async resetView(client: pg.PoolClient, view: string, keyColumns: readonly string[]): Promise<number> {
    const groups = await client.query<{ gkey: Row }>(`SELECT gkey FROM ${this.s}.view_groups WHERE view = $1 AND rows > 0 FOR UPDATE`, [view]);
    // A process view's results are its keys that have one.
    const keys = [...groups.rows.map((g) => g.gkey), ...(await new KeyedStateStore(this.s).reset(client, view))];
    const versions = await this.nextVersions(client, keys.length);
    const now = Date.now();
    await this.addToOutbox(
      client,
      view,
      keys.map((k, i) => ({ op: 'd', key: Object.fromEntries(keyColumns.map((c) => [c, k[c] ?? null])), after: null, version: versions[i]!.toString(), tsMs: now, columns: undefined })),
    );
    for (const t of ['view_offsets', 'view_rows', 'view_moved', 'view_groups', 'view_truncates', 'view_watermarks', 'view_keys', 'view_events']) {
      await client.query(`DELETE FROM ${this.s}.${t} WHERE view = $1`, [view]);
    }
    // A merged view keeps a truncate position per input table (view@table).
    await client.query(`DELETE FROM ${this.s}.view_truncates WHERE starts_with(view, $1 || '@')`, [view]);
    return keys.length;
  }

  /** What `views list` shows of one view. */
  async summary(client: pg.PoolClient, view: string): Promise<ViewSummary> {
    const one = async (sql: string) => Number((await client.query<{ n: string }>(sql, [view])).rows[0]?.n ?? 0);
    const offsets = await client.query<{ topic: string; kpartition: number; next_offset: string }>(
      `SELECT topic, kpartition, next_offset::text FROM ${this.s}.view_offsets WHERE view = $1 ORDER BY topic, kpartition`,
      [view],
    );
    return {
      rows: await one(`SELECT count(*)::text AS n FROM ${this.s}.view_rows WHERE view = $1 AND image IS NOT NULL`),
      // A process view's result rows are its keys with a result.
      groups: await one(
        `SELECT ((SELECT count(*) FROM ${this.s}.view_groups WHERE view = $1 AND rows > 0) +
                 (SELECT count(*) FROM ${this.s}.view_keyed_state WHERE view = $1 AND has_result))::text AS n`,
      ),
      outbox: await one(`SELECT coalesce(sum(n), 0)::text AS n FROM ${this.s}.view_outbox WHERE view = $1`),
      watermarkMs: await this.watermark(client, view),
      offsets: offsets.rows.map((r) => ({ topic: r.topic, partition: r.kpartition, next: r.next_offset })),
    };
  }
}

interface GroupRow {
  readonly gid: string;
  readonly gkey: Row | null;
  readonly rows: string;
  readonly state: string | null;
  readonly fired: boolean;
  readonly trigger_state: TriggerState | null;
}

function storedGroup(r: GroupRow): StoredGroup | null {
  return r.gkey === null || Number(r.rows) === 0
    ? null
    : { key: r.gkey, rows: Number(r.rows), state: parseJson<Record<string, JsonValue>>(r.state) ?? {}, fired: r.fired, trigger: r.trigger_state ?? null };
}

export interface ViewSummary {
  /** Row images held (a table's live rows the view has seen). */
  readonly rows: number;
  /** Result rows held: groups with rows, or a process view's keys with a result. */
  readonly groups: number;
  /** Results committed but not yet acknowledged by the output sink. */
  readonly outbox: number;
  /** The view's watermark (windowed views), null before its first. */
  readonly watermarkMs: number | null;
  readonly offsets: readonly { readonly topic: string; readonly partition: number; readonly next: string }[];
}

export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export function splitPartitionKey(key: string): { topic: string; partition: number } {
  const i = key.lastIndexOf('\u0000');
  return { topic: key.slice(0, i), partition: Number(key.slice(i + 1)) };
}
