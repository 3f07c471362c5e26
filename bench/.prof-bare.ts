import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { makeEvent } from '/work/main/test/support/events.ts';
const filler = 'lorem ipsum dolor sit amet '.repeat(30).slice(0, 700);
const events = Array.from({ length: 50000 }, (_, i) => makeEvent({ op: 'c', schema: 'b', table: 'orders', key: { id: i }, lsn: 1000 + i, after: {
  id: i, customer: `c-${i % 977}`, email: `u${i}@x.com`, status: 'pending', quantity: i % 17, price: '12.25', created_at: '2024-05-01T12:34:56.123456', tags: ['a','b'], note: null, description: filler } }));
const redis = new Redis();
const prefix = `cdc-prof:${randomUUID().slice(0,8)}:`;
const t0 = performance.now();
for (let s = 0; s < events.length; s += 5000) {
  const pipe = redis.pipeline();
  for (const e of events.slice(s, s + 5000)) {
    const args: string[] = [];
    for (const col in e.after!) { const v = e.after![col]; if (v !== null && v !== undefined) args.push(col, typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v)); }
    pipe.hset(`${prefix}orders:${String(e.key!['id'])}`, ...args);
  }
  await pipe.exec();
}
console.log({ bareMs: Math.round(performance.now() - t0) });
let cursor = '0'; do { const [n, keys] = await redis.scan(cursor, 'MATCH', prefix + '*', 'COUNT', 5000); cursor = n; if (keys.length) await redis.unlink(...keys); } while (cursor !== '0');
redis.disconnect();
