import { Planner } from '../connectors/postgres/batch-plan.ts';
import { postgresConfigSchema } from '../connectors/postgres/postgres-config.ts';
import { coalesce } from '../src/sink/coalesce.ts';
import { column, makeEvent } from '../test/support/events.ts';
import type { Row, ChangeEvent } from '../src/model/change-event.ts';
const S = 'x';
const COLUMNS = [column('id', 'int64')];
const filler = 'lorem ipsum dolor sit amet '.repeat(30).slice(0, 700);
const events: ChangeEvent[] = Array.from({ length: 50000 }, (_, i) => {
  const id = i % 10 === 0 ? (i / 10) % 100 : 1_000 + i;
  const row: Row = { id, customer: `customer-${i % 977}`, email: `user${i}@example.com`, status: i % 3 === 0 ? 'shipped' : 'pending',
    quantity: i % 17, price: `${i % 10_000}.25`, created_at: '2024-05-01T12:34:56.123456', tags: ['a', 'b', i % 2 === 0 ? 'even' : 'odd'], note: null, description: filler };
  return makeEvent({ op: 'c', schema: S, table: 'orders', key: { id }, after: row, lsn: 1000 + i, columns: COLUMNS });
});
const planner = new Planner('x', postgresConfigSchema.parse({ connection: {} }));
for (let r = 0; r < 5; r++) {
  let t = performance.now();
  for (let s = 0; s < 50000; s += 5000) coalesce(events.slice(s, s + 5000));
  const tc = performance.now() - t;
  t = performance.now();
  for (let s = 0; s < 50000; s += 5000) planner.plan(events.slice(s, s + 5000));
  console.log('coalesce ms', tc.toFixed(0), 'plan ms', (performance.now() - t).toFixed(0));
}
