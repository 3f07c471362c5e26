import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RawRecord } from '../../src/model/change-event.ts';
import { envelopeRecord } from '../../src/testing/envelope.ts';
import { q, viewPipeline } from '../support/view-pipeline.ts';

/**
 * Views written in TypeScript (test/fixtures/handlers/views-pipeline.ts), loaded by the config
 * loader and run by the real pipeline: Debezium JSON envelopes decoded, routed to the views, state
 * in PostgreSQL, results written by the PostgreSQL sink. The same changes are applied to a real
 * table, and each view's results must equal the SQL aggregate of that table, row by row.
 */

interface Order {
  id: number;
  customer_id: string;
  status: string;
  total: string;
  qty: number;
  ordered_at: string | null;
}

/** What SQL says each view must hold, and how the results are read back: both as text. */
const TRUTH = {
  revenue_per_customer:
    "SELECT customer_id, count(*)::text AS orders, sum(total)::text AS revenue, max(total)::text AS biggest FROM $S WHERE status <> 'cancelled' GROUP BY 1 ORDER BY 1",
  qty_per_day:
    "SELECT to_char(ordered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)::text AS orders, sum(qty)::text AS qty FROM $S WHERE ordered_at IS NOT NULL GROUP BY 1 ORDER BY 1",
  paid_per_hour:
    "SELECT (extract(epoch FROM date_bin('1 hour', ordered_at, 'epoch')) * 1000)::bigint::text AS window_start, count(*)::text AS orders, sum(total)::text AS revenue FROM $S WHERE status = 'paid' AND ordered_at IS NOT NULL GROUP BY 1 ORDER BY 1",
} as const;
const TARGET = {
  revenue_per_customer: 'SELECT customer_id, orders::text, revenue::text, biggest::text FROM $T ORDER BY 1',
  qty_per_day: 'SELECT day, orders::text, qty::text FROM $T ORDER BY 1',
  paid_per_hour: 'SELECT window_start::text, orders::text, revenue::text FROM $T ORDER BY 1',
} as const;

describe('views defined in TypeScript, through the pipeline', () => {
  const { client, source, failures, process, expectResultsEqualSql: equalSql } = viewPipeline({
    prefix: 'views_dsl',
    topics: ['test.public.orders'],
    handlers: resolve(import.meta.dirname, '../fixtures/handlers/views-pipeline.ts'),
    views: ['revenue_per_customer', 'qty_per_day', 'paid_per_hour'],
    sourceTables: { orders: 'id int PRIMARY KEY, customer_id text, status text, total numeric(10,2), qty int, ordered_at timestamptz' },
  });
  let offset = 0;

  function record(op: 'c' | 'u' | 'd', order: Order | { id: number }): RawRecord {
    const r = envelopeRecord({ op, table: 'orders', key: { id: order.id }, after: op === 'd' ? null : { ...order }, before: op === 'd' ? { id: order.id } : null });
    return { topic: r.topic, partition: 0, offset: String(offset++), timestamp: Date.now(), key: Buffer.from(r.key), value: Buffer.from(r.value), headers: {} };
  }

  /** The batch through the pipeline, and the same changes on the source table. */
  async function apply(changes: readonly ['c' | 'u' | 'd', Order | { id: number }][]): Promise<RawRecord[]> {
    const records = changes.map(([op, order]) => record(op, order));
    await process(records);
    for (const [op, order] of changes) {
      if (op === 'd') await client.query(`DELETE FROM ${q(source)}.orders WHERE id = $1`, [order.id]);
      else {
        const o = order as Order;
        await client.query(
          `INSERT INTO ${q(source)}.orders VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET ` +
            'customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, total = EXCLUDED.total, qty = EXCLUDED.qty, ordered_at = EXCLUDED.ordered_at',
          [o.id, o.customer_id, o.status, o.total, o.qty, o.ordered_at],
        );
      }
    }
    return records;
  }

  const expectResultsEqualSql = () => equalSql(TRUTH, TARGET, (sql) => sql.replace('$S', `${q(source)}.orders`));

  const order = (n: number, customer: string, status: string, total: string, qty: number, at: string | null): Order => ({
    id: n,
    customer_id: customer,
    status,
    total,
    qty,
    ordered_at: at,
  });

  it('inserts, updates across groups and windows, cancels, deletes: the results equal GROUP BY on the source', async () => {
    await apply([
      ['c', order(1, 'a', 'paid', '10.50', 2, '2024-05-01T10:15:00Z')],
      ['c', order(2, 'a', 'paid', '99.00', 1, '2024-05-01T10:45:00Z')],
      ['c', order(3, 'b', 'paid', '7.25', 5, '2024-05-01T11:05:00Z')],
      ['c', order(4, 'b', 'new', '1.00', 1, '2024-05-01T23:59:59.999Z')],
      ['c', order(5, 'c', 'paid', '3.10', 3, '2024-05-02T00:00:00Z')],
    ]);
    await expectResultsEqualSql();

    const moves: ['c' | 'u' | 'd', Order | { id: number }][] = [
      // To another customer, day and hour: retracted from the old groups and windows, added to the new.
      ['u', order(1, 'b', 'paid', '12.00', 4, '2024-05-02T08:30:00Z')],
      ['u', order(2, 'a', 'cancelled', '99.00', 1, '2024-05-01T10:45:00Z')],
      ['d', { id: 3 }],
      ['c', order(6, 'd', 'paid', '0.99', 7, '2024-05-01T10:01:00Z')],
    ];
    const redelivered = await apply(moves);
    await expectResultsEqualSql();
    // The same records again (a crash before the Kafka commit): applied zero times more.
    await process(redelivered);
    await expectResultsEqualSql();
    expect(failures).toEqual([]);
  });

  it("a record a view's function cannot take is dead-lettered for that view only, with stage view", async () => {
    await apply([
      ['c', order(7, 'e', 'paid', '5.00', 1, null)],
      ['u', order(4, 'b', 'paid', '1.00', 2, '2024-05-01T23:59:59.999Z')],
    ]);
    // revenue_per_customer counts order 7; qty_per_day's map throws on it; paid_per_hour finds no event time.
    await expectResultsEqualSql();
    // The views write concurrently: their failures come in either order.
    expect(failures.map((f) => [f.sink, f.error.code, f.error.stage]).sort()).toEqual([
      ['view:paid_per_hour', 'VIEW_NOT_A_TIME', 'view'],
      ['view:qty_per_day', 'VIEW_FUNCTION_FAILED', 'view'],
    ]);
    expect(failures.find((f) => f.sink === 'view:qty_per_day')?.error.message).toMatch(/^view qty_per_day: its map function threw: /);
  });
});
