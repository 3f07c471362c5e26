// A light live workload for the demo: Debezium-shaped changes to customers and orders, until stopped.
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { envelope } from '../src/testing/envelope.ts';

const brokers = (process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092').split(',');
const rate = Number(process.env['DEMO_RATE'] ?? '20');
const kafka = new Kafka({ clientId: 'cdc-router-demo-producer', brokers, logLevel: logLevel.WARN });
const admin = kafka.admin();
await admin.connect();
const topics = ['demo.public.customers', 'demo.public.orders'];
await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 3 })), waitForLeaders: true });
await admin.disconnect();
const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
await producer.connect();

let lsn = Date.now() * 16;
let running = true;
const stop = () => {
  running = false;
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
const live = new Set<number>();
for (let n = 0; running; n++) {
  const id = Math.floor(Math.random() * 500);
  const op = !live.has(id) ? 'c' : Math.random() < 0.1 ? 'd' : 'u';
  const customer = { id, email: `User${id}@Example.com`, name: `user ${id}`, password_hash: 'x', visits: n };
  const c = envelope({ op, table: 'customers', key: { id }, after: op === 'd' ? null : customer, before: op === 'c' ? null : { id }, lsn: (lsn += 8), prefix: 'demo', tsMs: Date.now() });
  const order = { id: n, customer_id: id, total: Math.round(Math.random() * 10000) / 100 };
  const o = envelope({ op: 'c', table: 'orders', key: { id: n }, after: order, lsn: (lsn += 8), prefix: 'demo', tsMs: Date.now(), withSchema: true });
  await producer.send({ topic: topics[0]!, messages: [{ key: c.key, value: c.value }] });
  await producer.send({ topic: topics[1]!, messages: [{ key: o.key, value: o.value }] });
  if (op === 'd') live.delete(id);
  else live.add(id);
  await new Promise((r) => setTimeout(r, 1000 / rate));
}
await producer.disconnect();
