import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { startService } from '../../src/service.ts';
import { envelope, type RowOf } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { openStores, ES_URL, PG_URL, REDIS_URL, type Stores } from '../support/stores.ts';

const strip = (row: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('__cdc')));

describe('the spine into PostgreSQL, Redis and Elasticsearch', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  const id = uniqueName('sinks').replace(/-/g, '_');
  const pgSchema = `it_${id}`;
  const redisPrefix = `${id}:`;
  const esPrefix = id.replace(/_/g, '-');

  beforeAll(async () => {
    kafka = await kafkaFixture();
    stores = await openStores();
  });
  afterAll(async () => {
    await stores.cleanup({ pgSchemas: [pgSchema], redisPrefixes: [redisPrefix], esIndexPattern: `${esPrefix}-*` });
    await stores.close();
    await kafka.close();
  });

  it('leaves every store equal to the expected rows, replays and reorders included', async () => {
    const prefix = uniqueName('sinks');
    const topics = { customers: `${prefix}.public.customers`, order_lines: `${prefix}.public.order_lines` };
    await kafka.createTopic(topics.customers, 3);
    await kafka.createTopic(topics.order_lines, 2);

    type Table = keyof typeof topics;
    const expected: Record<Table, Map<string, RowOf | undefined>> = { customers: new Map(), order_lines: new Map() };
    const sent: { topic: string; key: string; value: string | null }[] = [];
    let lsn = 10_000;
    const emit = (table: Table, key: RowOf, op: 'c' | 'u' | 'd', after: RowOf | null, keyId: string) => {
      const env = envelope({ op, table, key, after, before: op === 'c' ? null : key, lsn: (lsn += 8), prefix, withSchema: table === 'customers' });
      sent.push({ topic: topics[table], key: env.key, value: env.value });
      if (op === 'd') sent.push({ topic: topics[table], key: env.key, value: null });
      expected[table].set(keyId, after ?? undefined);
      return env;
    };
    const stale: { topic: string; key: string; value: string }[] = [];
    for (let round = 0; round < 4; round++) {
      for (let c = 1; c <= 30; c++) {
        const op = round === 0 ? 'c' : round === 3 && c % 5 === 0 ? 'd' : 'u';
        const row = { id: c, name: `customer ${c} ✓ r${round}`, email: round % 2 ? null : `c${c}@shop.test`, score: c + 0.5 + round / 4 };
        const env = emit('customers', { id: c }, op, op === 'd' ? null : row, String(c));
        if (round === 1 && c % 4 === 0) stale.push({ topic: topics.customers, ...env });
      }
      for (let o = 1; o <= 10; o++) {
        for (let line = 1; line <= 3; line++) {
          const op = round === 0 ? 'c' : round === 2 && line === 3 ? 'd' : round === 3 && line === 3 ? 'c' : 'u';
          const row = { order_id: o, line_no: line, sku: `sku-${o}-${line}`, qty: round + line };
          emit('order_lines', { order_id: o, line_no: line }, op, op === 'd' ? null : row, `${o}|${line}`);
        }
      }
    }
    // customers carry the schema block (JsonConverter schemas.enable=true), order_lines do not.
    // Old changes delivered again after newer ones (a replay): the stores must ignore them.
    for (const s of stale) sent.push(s);
    for (let i = 0; i < sent.length; i += 100) {
      const chunk = sent.slice(i, i + 100);
      await kafka.producer.sendBatch({ topicMessages: chunk.map((m) => ({ topic: m.topic, messages: [{ key: m.key, value: m.value }] })) });
    }

    const group = uniqueName('sinks-group');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: Object.values(topics) },
      sinks: {
        pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
        cache: { kind: 'redis', url: REDIS_URL, key_prefix: redisPrefix, mode: 'json' },
        search: { kind: 'elasticsearch', nodes: ES_URL, index_template: `${esPrefix}-{table}`, refresh: 'true' },
      },
      routes: [
        { table: 'public.customers', sinks: ['pg', 'cache', 'search'] },
        { table: 'public.order_lines', sinks: ['pg', 'cache', 'search'] },
      ],
    });
    const service = await startService(config, { logger: createLogger({ level: 'warn' }) });
    try {
      for (const topic of Object.values(topics)) {
        const end = await kafka.endOffsets(topic);
        await waitUntil(
          async () => {
            const c = await kafka.committed(group, topic);
            return [...end].every(([p, e]) => c.get(p) === e);
          },
          120_000,
          `commits to reach the end of ${topic}`,
        );
      }
    } finally {
      await service.stop();
    }

    for (const table of ['customers', 'order_lines'] as const) {
      const want = new Map([...expected[table]].filter(([, v]) => v !== undefined) as [string, RowOf][]);
      const keyOf = (r: Record<string, unknown>) => (table === 'customers' ? String(r['id']) : `${String(r['order_id'])}|${String(r['line_no'])}`);

      const pgRows = await stores.pgRows(pgSchema, table);
      expect(new Map(pgRows.map((r) => [keyOf(r), strip(r)]))).toEqual(want);
      expect(pgRows).toHaveLength(want.size);

      const redisRows = await stores.redisJson(`${redisPrefix}${table}:`);
      expect(new Map([...redisRows.values()].map((r) => [keyOf(r), strip(r)]))).toEqual(want);

      const docs = await stores.esDocs(`${esPrefix}-${table}`);
      expect(new Map([...docs].map(([docId, d]) => [docId, strip(d)]))).toEqual(want);
    }
  });
});
