import type pg from 'pg';
import type { Row } from '../model/change-event.ts';
import type { StoredKeyedState } from './keyed-state.ts';
import { jsonWithBigints } from '../model/serialize.ts';

/**
 * The keyed state of `process` views in PostgreSQL, beside the rest of the view state (state-store.ts)
 * and changed in the same transaction: per (view, key) the state, whether the key has a result
 * downstream, and when its last entry expires; per view its stream time (the event-time TTL clock).
 */

export interface StoredKey {
  readonly key: Row;
  readonly state: StoredKeyedState;
  readonly hasResult: boolean;
}

export interface KeyWrite extends StoredKey {
  readonly gid: string;
  /** null: an entry never expires; undefined: nothing stored. */
  readonly expiresAt: number | null | undefined;
}

const toJson = jsonWithBigints;

/** `s` is the quoted schema of the StateStore. */
export async function ensureKeyedStateSchema(client: pg.PoolClient, s: string): Promise<void> {
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_keyed_state (
    view text NOT NULL, gid text NOT NULL, gkey jsonb, state jsonb NOT NULL DEFAULT '{}'::jsonb,
    has_result boolean NOT NULL DEFAULT false, expires_at bigint, PRIMARY KEY (view, gid))`);
  await client.query(`CREATE INDEX IF NOT EXISTS view_keyed_state_expiry ON ${s}.view_keyed_state (view, expires_at) WHERE expires_at IS NOT NULL`);
  await client.query(`CREATE TABLE IF NOT EXISTS ${s}.view_stream_time (view text PRIMARY KEY, time_ms bigint NOT NULL)`);
}

export class KeyedStateStore {
  constructor(private readonly s: string) {}

  /** Locks these keys in sorted order (placeholders for new ones, so a key new to two transactions is locked too). */
  async lock(client: pg.PoolClient, view: string, gids: readonly string[]): Promise<Map<string, StoredKey>> {
    const sorted = [...new Set(gids)].sort();
    if (sorted.length === 0) return new Map();
    await client.query(`INSERT INTO ${this.s}.view_keyed_state (view, gid) SELECT $1, g FROM unnest($2::text[]) AS u(g) ON CONFLICT DO NOTHING`, [view, sorted]);
    const res = await client.query<{ gid: string; gkey: Row | null; state: StoredKeyedState; has_result: boolean }>(
      `SELECT gid, gkey, state, has_result FROM ${this.s}.view_keyed_state WHERE view = $1 AND gid = ANY($2::text[])
       ORDER BY gid COLLATE "C" FOR UPDATE`,
      [view, sorted],
    );
    return new Map(res.rows.map((r) => [r.gid, { key: r.gkey ?? {}, state: r.state, hasResult: r.has_result }]));
  }

  /**
   * Writes the keys (an upsert: a row the sweep deleted while this transaction waited is written
   * again); a key with no state left and no result is deleted.
   */
  async save(client: pg.PoolClient, view: string, keys: readonly KeyWrite[]): Promise<void> {
    const kept = keys.filter((k) => k.hasResult || k.expiresAt !== undefined);
    const gone = keys.filter((k) => !k.hasResult && k.expiresAt === undefined).map((k) => k.gid);
    if (kept.length > 0) {
      await client.query(
        `INSERT INTO ${this.s}.view_keyed_state (view, gid, gkey, state, has_result, expires_at)
         SELECT $1, g, k::jsonb, st::jsonb, r, e FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[], $6::bigint[]) AS u(g, k, st, r, e)
         ON CONFLICT (view, gid) DO UPDATE SET gkey = EXCLUDED.gkey, state = EXCLUDED.state, has_result = EXCLUDED.has_result, expires_at = EXCLUDED.expires_at`,
        [
          view,
          kept.map((k) => k.gid),
          kept.map((k) => toJson(k.key)),
          kept.map((k) => toJson(k.state)),
          kept.map((k) => k.hasResult),
          kept.map((k) => (typeof k.expiresAt === 'number' ? Math.ceil(k.expiresAt) : null)),
        ],
      );
    }
    if (gone.length > 0) await client.query(`DELETE FROM ${this.s}.view_keyed_state WHERE view = $1 AND gid = ANY($2::text[])`, [view, gone]);
  }

  /**
   * Removes the state of keys whose every entry expired by `nowMs`: the row when the key has no
   * result, the state only when it has. Rows other transactions hold are skipped (no waits, no
   * deadlocks): they drop their expired entries themselves when they save.
   */
  async sweep(client: pg.PoolClient, view: string, nowMs: number): Promise<number> {
    const res = await client.query(
      `WITH due AS (SELECT gid FROM ${this.s}.view_keyed_state WHERE view = $1 AND expires_at <= $2 ORDER BY gid COLLATE "C" FOR UPDATE SKIP LOCKED),
       gone AS (DELETE FROM ${this.s}.view_keyed_state v USING due WHERE v.view = $1 AND v.gid = due.gid AND NOT v.has_result RETURNING 1),
       cleared AS (UPDATE ${this.s}.view_keyed_state v SET state = '{}'::jsonb, expires_at = NULL FROM due WHERE v.view = $1 AND v.gid = due.gid AND v.has_result RETURNING 1)
       SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM cleared) AS n`,
      [view, Math.floor(nowMs)],
    );
    return Number((res.rows[0] as { n: string } | undefined)?.n ?? 0);
  }

  async streamTime(client: pg.PoolClient, view: string): Promise<number | null> {
    const res = await client.query<{ t: string }>(`SELECT time_ms::text AS t FROM ${this.s}.view_stream_time WHERE view = $1`, [view]);
    return res.rows[0] ? Number(res.rows[0].t) : null;
  }

  /** Stream time only moves forward, whichever instance writes last. */
  async saveStreamTime(client: pg.PoolClient, view: string, ms: number): Promise<void> {
    await client.query(
      `INSERT INTO ${this.s}.view_stream_time (view, time_ms) VALUES ($1, $2)
       ON CONFLICT (view) DO UPDATE SET time_ms = GREATEST(${this.s}.view_stream_time.time_ms, EXCLUDED.time_ms)`,
      [view, Math.floor(ms)],
    );
  }

  /** views reset: the keys whose results are downstream (to delete them), locked; then the view's keyed state is dropped. */
  async reset(client: pg.PoolClient, view: string): Promise<Row[]> {
    const res = await client.query<{ gkey: Row }>(`SELECT gkey FROM ${this.s}.view_keyed_state WHERE view = $1 AND has_result FOR UPDATE`, [view]);
    await client.query(`DELETE FROM ${this.s}.view_keyed_state WHERE view = $1`, [view]);
    await client.query(`DELETE FROM ${this.s}.view_stream_time WHERE view = $1`, [view]);
    return res.rows.map((r) => r.gkey);
  }
}
