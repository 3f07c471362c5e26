import { resolve } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import type { RawRecord } from '../../src/model/change-event.ts';
import type { RecordFailure } from '../../src/pipeline/contracts.ts';
import { buildPipeline, type Pipeline } from '../../src/compose/pipeline.ts';
import { envelopeRecord } from '../../src/testing/envelope.ts';
import { uniqueName } from '../support/kafka.ts';
import { PG_URL } from '../support/stores.ts';

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

const q = (id: string) => `"${id}"`;

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
  const id = uniqueName('views_ops').replace(/-/g, '_').toLowerCase();
  const target = `${id}_target`;
  const state = `${id}_state`;
  const source = `${id}_source`;
  const client = new pg.Client({ connectionString: PG_URL });
  const failures: RecordFailure[] = [];
  const offsets = { orders: 0, refunds: 0 };
  let pipeline: Pipeline;

  beforeAll(async () => {
    await client.connect();
    await client.query(`CREATE SCHEMA ${q(source)}`);
    await client.query(`CREATE TABLE ${q(source)}.orders (id int PRIMARY KEY, customer_id text, status text, total numeric(10,2), tags text)`);
    await client.query(`CREATE TABLE ${q(source)}.refunds (id int PRIMARY KEY, customer_id text, amount numeric(10,2))`);
    const config = await resolveConfig(
      {
        kafka: { brokers: ['127.0.0.1:9092'], topics: ['test.public.orders', 'test.public.refunds'] },
        sinks: { pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: target } },
        routes: [],
        state: { connection_string: PG_URL, schema: state },
        handlers: resolve(import.meta.dirname, '../fixtures/handlers/views-operators.ts'),
        log: { level: 'warn' },
      },
      { env: {} },
    );
    expect(Object.keys(config.views)).toEqual(Object.keys(TRUTH));
    pipeline = await buildPipeline(config, {
      logger: pino({ level: 'silent' }),
      events: new RouterEvents(),
      onFailure: (failure) => {
        failures.push(failure);
        return Promise.resolve(true);
      },
    });
  });

  afterAll(async () => {
    await pipeline?.close();
    for (const schema of [source, target, state]) await client.query(`DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`);
    await client.end();
  });

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

  async function process(records: readonly RawRecord[]): Promise<void> {
    let committed: bigint | undefined;
    const outcome = await pipeline.processor.process(records, { signal: new AbortController().signal, progress: (o) => (committed = o) });
    expect(outcome.halted).toBeUndefined();
    expect(outcome.commitOffset ?? committed).toBe(BigInt(Number(records.at(-1)!.offset) + 1));
  }

  async function expectResultsEqualSql(): Promise<void> {
    for (const view of Object.keys(TRUTH) as (keyof typeof TRUTH)[]) {
      const truth = (await client.query(TRUTH[view].replaceAll('$S', q(source)))).rows;
      const results = (await client.query(TARGET[view].replace('$T', `${q(target)}.${q(view)}`))).rows;
      expect(results, view).toEqual(truth);
      expect(truth.length, `${view} has results`).toBeGreaterThan(0);
    }
  }

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
