import { describe, expect, it } from 'vitest';
import { viewState } from '../support/view-state.ts';

/**
 * An instance starting (ensureSchema) while another one applies batches to the same state: the
 * schema's DDL and a batch's transaction lock the same tables in different orders, and PostgreSQL
 * breaks the deadlock by failing one of them. A failed ensureSchema used to end the starting
 * router (exit 2) before it joined the group.
 */
describe('view state schema while another instance writes', () => {
  const { pool, schema, store } = viewState('view_state_startup', 4);

  it('a start on a schema already at its version runs no DDL: it does not wait for a running batch', async () => {
    const batch = await pool.connect();
    const starting = await pool.connect();
    try {
      // What a running batch holds; any DDL on these tables would wait for its commit.
      await batch.query('BEGIN');
      for (const t of ['view_offsets', 'view_rows', 'view_groups', 'view_outbox']) await batch.query(`LOCK TABLE "${schema}".${t} IN ROW EXCLUSIVE MODE`);
      await starting.query(`SET statement_timeout = '2s'`);
      await expect(store.ensureSchema(starting)).resolves.toBeUndefined();
    } finally {
      await batch.query('ROLLBACK');
      await starting.query('RESET statement_timeout');
      batch.release();
      starting.release();
    }
  });

  it('ensureSchema survives a deadlock with a running batch transaction: it is run again, and the batch commits', async () => {
    // A schema of an earlier layout (no version recorded): the start runs the DDL.
    await pool.query(`DELETE FROM "${schema}".view_schema`);
    const batch = await pool.connect();
    const starting = await pool.connect();
    const startingPid = Number((await starting.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    try {
      // A batch of another instance: its offsets row first (as lockOffsets does), its outbox entry later.
      await batch.query('BEGIN');
      await batch.query(`INSERT INTO "${schema}".view_offsets (view, topic, kpartition, next_offset) VALUES ('v', 't', 0, 1)`);
      const ensured = store.ensureSchema(starting).then(
        () => 'ok',
        (err: unknown) => err,
      );
      // Let the DDL take its first locks and wait for the batch's offsets row lock.
      await waitUntilBlocked(startingPid);
      let batchError: unknown;
      try {
        await batch.query(`INSERT INTO "${schema}".view_outbox (view, payload) VALUES ('v', '{}')`);
        await batch.query('COMMIT');
      } catch (err) {
        batchError = err;
        await batch.query('ROLLBACK');
      }
      expect(await ensured).toBe('ok');
      // Whichever side PostgreSQL chose, the schema is there and a batch can be written (again).
      if (batchError !== undefined) expect((batchError as { code?: string }).code).toBe('40P01');
      const outbox = await pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${schema}".view_outbox`);
      expect(Number(outbox.rows[0]!.n)).toBe(batchError === undefined ? 1 : 0);
    } finally {
      batch.release();
      starting.release();
    }
  });

  async function waitUntilBlocked(pid: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const r = await pool.query<{ w: string | null }>(`SELECT wait_event_type AS w FROM pg_stat_activity WHERE pid = $1`, [pid]);
      if (r.rows[0]?.w === 'Lock') return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error('ensureSchema never waited for a lock');
  }
});
