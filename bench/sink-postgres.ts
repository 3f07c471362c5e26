/**
 * PostgreSQL sink throughput against a bare batched write with the same driver (the ceiling).
 *
 *   npx tsx bench/sink-postgres.ts        (PG_URL, ROWS, BATCH, ROUNDS to change)
 *
 * Both sides get the same generated rows (~1 KB, 10% of them on 100 hot keys), in batches of 5000,
 * into empty tables (truncated between rounds, not timed); within a round they alternate batch by
 * batch, which side goes first alternating too. The ratio is of the medians over the rounds. The bare write is what one would write by
 * hand: one INSERT … SELECT FROM unnest(typed arrays) ON CONFLICT DO UPDATE per batch, in a
 * transaction, the batch deduplicated by key; no position guard, no tombstones, no type mapping.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { postgresSink } from '../connectors/postgres/postgres-sink.ts';
import { createLogger } from '../src/log.ts';
import type { ChangeEvent, Row } from '../src/model/change-event.ts';
import { column, makeEvent } from '../test/support/events.ts';

const PG_URL = process.env['PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const ROWS = Number(process.env['ROWS'] ?? 50_000);
const BATCH = Number(process.env['BATCH'] ?? 5_000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const SCHEMA = `bench_${randomUUID().slice(0, 8)}`;
const TABLE = 'orders';

const COLUMNS = [
  column('id', 'int64'),
  column('customer', 'string'),
  column('email', 'string'),
  column('status', 'string'),
  column('quantity', 'int32'),
  column('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' }),
  column('created_at', 'int64', 'io.debezium.time.MicroTimestamp'),
  { ...column('tags', 'array'), items: column('', 'string') },
  column('note', 'string'),
  column('description', 'string'),
];

function generate(): ChangeEvent[] {
  const filler = 'lorem ipsum dolor sit amet '.repeat(30).slice(0, 700);
  return Array.from({ length: ROWS }, (_, i) => {
    const id = i % 10 === 0 ? (i / 10) % 100 : 1_000 + i; // every 10th row hits one of 100 hot keys
    const row: Row = {
      id,
      customer: `customer-${i % 977}`,
      email: `user${i}@example.com`,
      status: i % 3 === 0 ? 'shipped' : 'pending',
      quantity: i % 17,
      price: `${i % 10_000}.25`,
      created_at: '2024-05-01T12:34:56.123456',
      tags: ['a', 'b', i % 2 === 0 ? 'even' : 'odd'],
      note: null,
      description: filler,
    };
    return makeEvent({ op: i % 10 === 0 ? 'u' : 'c', schema: SCHEMA, table: TABLE, key: { id }, after: row, lsn: 1_000 + i, columns: COLUMNS });
  });
}

const BARE_TABLE = `${SCHEMA}.bare_orders`;
const BARE_SQL =
  `INSERT INTO ${BARE_TABLE} (id, customer, email, status, quantity, price, created_at, tags, note, description) ` +
  `SELECT u.id, u.customer, u.email, u.status, u.quantity, u.price, u.created_at, u.tags::text[], u.note, u.description ` +
  `FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::numeric[], $7::timestamp[], $8::text[], $9::text[], $10::text[]) ` +
  `AS u(id, customer, email, status, quantity, price, created_at, tags, note, description) ` +
  `ON CONFLICT (id) DO UPDATE SET customer = EXCLUDED.customer, email = EXCLUDED.email, status = EXCLUDED.status, ` +
  `quantity = EXCLUDED.quantity, price = EXCLUDED.price, created_at = EXCLUDED.created_at, tags = EXCLUDED.tags, ` +
  `note = EXCLUDED.note, description = EXCLUDED.description`;

/** The ceiling: last write per key wins, one statement, one transaction. */
async function bare(client: pg.Client, batch: readonly ChangeEvent[]): Promise<void> {
  const byId = new Map<unknown, Row>();
  for (const e of batch) byId.set(e.key?.['id'], e.after ?? {});
  const rows = [...byId.values()];
  const col = (name: string) => rows.map((r) => r[name] ?? null);
  const params = [
    col('id'),
    col('customer'),
    col('email'),
    col('status'),
    col('quantity'),
    col('price'),
    col('created_at'),
    rows.map((r) => `{${(r['tags'] as string[]).join(',')}}`),
    col('note'),
    col('description'),
  ];
  await client.query('BEGIN');
  await client.query(BARE_SQL, params);
  await client.query('COMMIT');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const events = generate();
  const bytes = events.reduce((n, e) => n + JSON.stringify(e.after).length, 0);
  const logger = createLogger({ level: 'warn' });
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${SCHEMA}`);
  await admin.query(
    `CREATE TABLE ${BARE_TABLE} (id bigint PRIMARY KEY, customer text, email text, status text, quantity integer, ` +
      'price numeric, created_at timestamp, tags text[], note text, description text)',
  );
  const sink = postgresSink.create('bench', postgresSink.configSchema.parse({ connection: { connection_string: PG_URL } }), { logger });
  await sink.start();
  const write = async (batch: readonly ChangeEvent[]) => {
    const results = await sink.write(batch);
    const bad = results.find((r) => !r.ok);
    if (bad && !bad.ok) throw bad.error;
  };
  await write(events.slice(0, 1)); // creates the target table: DDL is not what we measure

  const sinkRates: number[] = [];
  const bareRates: number[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      await admin.query(`TRUNCATE ${SCHEMA}.${TABLE}, ${SCHEMA}.${TABLE}__cdc_tombstones, ${BARE_TABLE}`);
      // Batch by batch: both sides see the same moments of a shared, noisy machine.
      let sinkMs = 0;
      let bareMs = 0;
      const timed = async (fn: () => Promise<void>) => {
        const t0 = performance.now();
        await fn();
        return performance.now() - t0;
      };
      for (let s = 0; s < events.length; s += BATCH) {
        const batch = events.slice(s, s + BATCH);
        // Which side goes first alternates too, so neither always follows the other's commit.
        if ((s / BATCH + round) % 2 === 0) {
          sinkMs += await timed(() => write(batch));
          bareMs += await timed(() => bare(admin, batch));
        } else {
          bareMs += await timed(() => bare(admin, batch));
          sinkMs += await timed(() => write(batch));
        }
      }
      sinkRates.push(ROWS / (sinkMs / 1000));
      bareRates.push(ROWS / (bareMs / 1000));
    }
    const [sinkCount, bareCount] = await Promise.all(
      [`${SCHEMA}.${TABLE}`, BARE_TABLE].map(async (t) => Number((await admin.query(`SELECT count(*) AS n FROM ${t}`)).rows[0].n)),
    );
    if (sinkCount !== bareCount) throw new Error(`row counts differ: sink ${sinkCount}, bare ${bareCount}`);
  } finally {
    await sink.close();
    await admin.query(`DROP SCHEMA ${SCHEMA} CASCADE`);
    await admin.end();
  }
  const a = median(sinkRates);
  const b = median(bareRates);
  console.log(
    [
      '| rows | batch | sink rows/s | bare rows/s | ratio |',
      '| --- | --- | --- | --- | --- |',
      `| ${ROWS} | ${BATCH} | ${Math.round(a)} | ${Math.round(b)} | ${(a / b).toFixed(2)} |`,
    ].join('\n'),
  );
  console.log(
    JSON.stringify({
      bench: 'sink-postgres',
      rows: ROWS,
      batch: BATCH,
      avgRowBytes: Math.round(bytes / ROWS),
      sinkRowsPerSec: sinkRates.map(Math.round),
      bareRowsPerSec: bareRates.map(Math.round),
      ratio: Number((a / b).toFixed(3)),
    }),
  );
}

await main();
