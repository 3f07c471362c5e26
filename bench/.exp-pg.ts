import pg from 'pg';
import { Planner } from '../connectors/postgres/batch-plan.ts';
import { postgresConfigSchema } from '../connectors/postgres/postgres-config.ts';
import { postgresSink } from '../connectors/postgres/postgres-sink.ts';
import { createLogger } from '../src/log.ts';
import { column, makeEvent } from '../test/support/events.ts';
import type { Row, ChangeEvent } from '../src/model/change-event.ts';

const S = 'bexp_' + Math.random().toString(16).slice(2, 8);
const COLUMNS = [
  column('id', 'int64'), column('customer', 'string'), column('email', 'string'), column('status', 'string'),
  column('quantity', 'int32'), column('price', 'bytes', 'org.apache.kafka.connect.data.Decimal', { scale: '2' }),
  column('created_at', 'int64', 'io.debezium.time.MicroTimestamp'), { ...column('tags', 'array'), items: column('', 'string') },
  column('note', 'string'), column('description', 'string'),
];
const filler = 'lorem ipsum dolor sit amet '.repeat(30).slice(0, 700);
const events: ChangeEvent[] = Array.from({ length: 50000 }, (_, i) => {
  const id = i % 10 === 0 ? (i / 10) % 100 : 1_000 + i;
  const row: Row = { id, customer: `customer-${i % 977}`, email: `user${i}@example.com`, status: i % 3 === 0 ? 'shipped' : 'pending',
    quantity: i % 17, price: `${i % 10_000}.25`, created_at: '2024-05-01T12:34:56.123456', tags: ['a', 'b', i % 2 === 0 ? 'even' : 'odd'], note: null, description: filler };
  return makeEvent({ op: 'c', schema: S, table: 'orders', key: { id }, after: row, lsn: 1000 + i, columns: COLUMNS });
});
const cfg = postgresConfigSchema.parse({ connection: {} });
const planner = new Planner('x', cfg);
let t = performance.now();
for (let s = 0; s < 50000; s += 5000) planner.plan(events.slice(s, s + 5000));
console.log('plan ms', (performance.now() - t).toFixed(0));

const sink = postgresSink.create('b', postgresSink.configSchema.parse({ connection: { connection_string: 'postgres://postgres@127.0.0.1/test' } }), { logger: createLogger({ level: 'warn' }) });
await sink.start();
await sink.write(events.slice(0, 1));
const c = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1/test' });
await c.connect();
// capture SQL + params by monkeypatching
const orig = pg.Client.prototype.query;
const captured: { text: string; values: unknown[] }[] = [];
(pg.Client.prototype as unknown as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
  if (typeof args[0] === 'string' && (args[0] as string).startsWith('INSERT')) captured.push({ text: args[0] as string, values: args[1] as unknown[] });
  return (orig as (...a: unknown[]) => unknown).apply(this, args);
} as unknown;
t = performance.now();
for (let s = 0; s < 50000; s += 5000) await sink.write(events.slice(s, s + 5000));
console.log('sink total ms', (performance.now() - t).toFixed(0));
(pg.Client.prototype as unknown as { query: unknown }).query = orig;
console.log(captured[0]!.text);
for (const variant of ['same', 'noguard']) {
  await c.query(`TRUNCATE ${S}.orders`);
  t = performance.now();
  for (const q of captured) {
    let text = q.text;
    if (variant === 'noguard') text = text.replace(/WHERE NOT EXISTS \(.*?\) ON CONFLICT/, 'ON CONFLICT');
    await c.query('BEGIN'); await c.query(text, q.values); await c.query('COMMIT');
  }
  console.log(variant, 'replay ms', (performance.now() - t).toFixed(0));
}
await sink.close();
await c.query(`DROP SCHEMA ${S} CASCADE`);
await c.end();
