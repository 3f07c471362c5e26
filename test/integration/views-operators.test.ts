import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RawRecord } from '../../src/model/change-event.ts';
import { envelopeRecord } from '../../src/testing/envelope.ts';
import { q, viewPipeline } from '../support/view-pipeline.ts';

/**
 * flatMap, merge and branch on tables (test/fixtures/handlers/views-operators.ts) through the real
 * pipeline, state in PostgreSQL, results written by the PostgreSQL sink. The same changes go to
 * real tables, and each view must equal its SQL over them, row by row, after updates that change a
 * row's flatMap output, deletes, a truncate of one of two merged tables, and a redelivered batch.
 */

interface Order {
  id: number;
  customer_id: string;
  status: string;
  total: string;
  tags: string | null;
}
interface Refund {
  id: number;
  customer_id: string;
  amount: string;
}
type Change = ['orders', 'c' | 'u' | 'd', Order | { id: number }] | ['refunds', 'c' | 'u' | 'd', Refund | { id: number }] | ['refunds', 't'];

const TRUTH = {
  per_tag:
    "SELECT tag, count(*)::text AS n, sum(total)::text AS revenue FROM $S.orders, unnest(string_to_array(tags, ',')) AS tag GROUP BY 1 ORDER BY 1",
  net_per_customer:
    'SELECT customer_id, sum(amount)::text AS net, count(*)::text AS changes FROM (SELECT customer_id, total AS amount FROM $S.orders UNION ALL SELECT customer_id, -amount FROM $S.refunds) AS u GROUP BY 1 ORDER BY 1',
  paid_per_customer: "SELECT customer_id, count(*)::text AS n, sum(total)::text AS revenue FROM $S.orders WHERE status = 'paid' GROUP BY 1 ORDER BY 1",
  unpaid_per_status: "SELECT status, count(*)::text AS n FROM $S.orders WHERE status <> 'paid' GROUP BY 1 ORDER BY 1",
} as const;
const TARGET = {
  per_tag: 'SELECT tag, n::text, revenue::text FROM $T ORDER BY 1',
  net_per_customer: 'SELECT customer_id, net::text, changes::text FROM $T ORDER BY 1',
  paid_per_customer: 'SELECT customer_id, n::text, revenue::text FROM $T ORDER BY 1',
  unpaid_per_status: 'SELECT status, n::text FROM $T ORDER BY 1',
} as const;

describe('flatMap, merge and branch through the pipeline', () => {
  const { client, source, failures, process, expectResultsEqualSql: equalSql } = viewPipeline({
    prefix: 'views_ops',
    topics: ['test.public.orders', 'test.public.refunds'],
    handlers: resolve(import.meta.dirname, '../fixtures/handlers/views-operators.ts'),
    views: Object.keys(TRUTH),
    sourceTables: {
      orders: 'id int PRIMARY KEY, customer_id text, status text, total numeric(10,2), tags text',
      refunds: 'id int PRIMARY KEY, customer_id text, amount numeric(10,2)',
    },
  });
  const offsets = { orders: 0, refunds: 0 };

  function record(change: Change): RawRecord {
    const [table, op, row] = change;
    const r =
      op === 't'
        ? envelopeRecord({ op, table, key: null })
        : envelopeRecord({ op, table, key: { id: row.id }, after: op === 'd' ? null : { ...row }, before: op === 'd' ? { id: row.id } : null });
    return { topic: r.topic, partition: 0, offset: String(offsets[table]++), timestamp: Date.now(), key: Buffer.from(r.key), value: Buffer.from(r.value), headers: {} };
  }

  async function onSource(change: Change): Promise<void> {
    const [table, op, row] = change;
    const t = `${q(source)}.${table}`;
    if (op === 't') await client.query(`TRUNCATE ${t}`);
    else if (op === 'd') await client.query(`DELETE FROM ${t} WHERE id = $1`, [row.id]);
    else {
      const cols = Object.keys(row);
      await client.query(
        `INSERT INTO ${t} (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (id) DO UPDATE SET ` +
          cols.map((c) => `${c} = EXCLUDED.${c}`).join(', '),
        Object.values(row),
      );
    }
  }

  /** The changes through the pipeline (one batch per topic, as partitions are), and on the source tables. */
  async function apply(changes: readonly Change[]): Promise<RawRecord[]> {
    const records = changes.map(record);
    for (const topic of new Set(records.map((r) => r.topic))) await process(records.filter((r) => r.topic === topic));
    for (const c of changes) await onSource(c);
    return records;
  }

  const expectResultsEqualSql = () => equalSql(TRUTH, TARGET, (sql) => sql.replaceAll('$S', q(source)));

  const order = (n: number, customer: string, status: string, total: string, tags: string | null): Order => ({ id: n, customer_id: customer, status, total, tags });
  const refund = (n: number, customer: string, amount: string): Refund => ({ id: n, customer_id: customer, amount });

  it('updates retract every element of the old flatMap output; a merged truncate retracts its own table; redelivery changes nothing', async () => {
    await apply([
      ['orders', 'c', order(1, 'a', 'paid', '10.50', 'x,y')],
      ['orders', 'c', order(2, 'a', 'new', '99.00', 'y,y,z')],
      ['orders', 'c', order(3, 'b', 'paid', '7.25', null)],
      ['orders', 'c', order(4, 'c', 'cancelled', '1.00', 'z')],
      // Refund 1 shares order 1's primary key: a merged view keeps them apart.
      ['refunds', 'c', refund(1, 'a', '2.50')],
      ['refunds', 'c', refund(2, 'b', '7.25')],
    ]);
    await expectResultsEqualSql();

    const moves: Change[] = [
      // New tags and status: every old element is retracted, the new ones added; the order moves between branches.
      ['orders', 'u', order(1, 'a', 'new', '11.00', 'z,w')],
      ['orders', 'u', order(2, 'b', 'paid', '99.00', 'y')],
      ['orders', 'd', { id: 3 }],
      ['orders', 'c', order(5, 'd', 'paid', '0.99', 'w,x')],
      ['refunds', 'u', refund(2, 'c', '1.00')],
      ['refunds', 'c', refund(3, 'd', '0.50')],
    ];
    const redelivered = await apply(moves);
    await expectResultsEqualSql();
    // The same records again (a crash before the Kafka commit): applied zero times more.
    for (const topic of new Set(redelivered.map((r) => r.topic))) await process(redelivered.filter((r) => r.topic === topic));
    await expectResultsEqualSql();

    // A truncate of refunds takes back the refunds only, not the orders of the same customers (nor order 1, id 1).
    await apply([['refunds', 't'], ['refunds', 'c', refund(4, 'a', '1.25')]]);
    await expectResultsEqualSql();
    expect(failures).toEqual([]);
  });
});
