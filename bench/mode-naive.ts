/**
 * Mode (b): the consumer one writes first. kafkajs eachMessage with auto-commit, and per event one
 * awaited write per store, one store after the other: a PostgreSQL upsert (or delete), a Redis SET
 * (or DEL), an Elasticsearch index (or delete) request. No batching, no position guard. It runs for
 * a time budget; its rate is what it finished in that time.
 */
import { Kafka, logLevel } from 'kafkajs';
import { COLUMNS, TABLES, type TableName } from './corpus.ts';
import type { ModeRunner, WorkerTask } from './protocol.ts';
import { createEsIndices, createPgTables, esIndex, openStoreClients, quote, redisKey } from './stores.ts';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JsonConverter with schemas.enable wraps everything in {schema, payload}. */
function unwrap(text: string): unknown {
  const parsed: unknown = JSON.parse(text);
  return isObject(parsed) && 'schema' in parsed && 'payload' in parsed ? parsed['payload'] : parsed;
}

export async function prepareNaive(task: Extract<WorkerTask, { kind: 'naive' }>): Promise<ModeRunner> {
  const clients = openStoreClients(task.servers, 1);
  const { pg, redis, es } = clients;
  await createPgTables(pg, task.targets.pgSchema);
  await createEsIndices(es, task.targets);
  const upsert = new Map<TableName, string>();
  const remove = new Map<TableName, string>();
  for (const table of TABLES) {
    const names = COLUMNS[table].map(([n]) => n);
    const target = `${quote(task.targets.pgSchema)}.${quote(table)}`;
    upsert.set(
      table,
      `INSERT INTO ${target} (${names.map(quote).join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) ` +
        `ON CONFLICT (id) DO UPDATE SET ${names.filter((n) => n !== 'id').map((n) => `${quote(n)} = EXCLUDED.${quote(n)}`).join(', ')}`,
    );
    remove.set(table, `DELETE FROM ${target} WHERE id = $1`);
  }

  const kafka = new Kafka({ clientId: 'cdc-bench-naive', brokers: [task.servers.broker], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: task.group, allowAutoTopicCreation: false });
  let processed = 0;

  async function handle(value: Buffer | null): Promise<void> {
    if (value === null) return; // a tombstone: nothing to write
    const change = unwrap(value.toString('utf8'));
    if (!isObject(change) || !isObject(change['source'])) throw new Error('not a Debezium envelope');
    const table = change['source']['table'] as TableName;
    const sql = upsert.get(table);
    if (!sql) return;
    if (change['op'] === 'd') {
      const id = (change['before'] as Json)['id'] as number;
      await pg.query(remove.get(table)!, [id]);
      await redis.del(redisKey(task.targets, table, id));
      await es.delete({ index: esIndex(task.targets, table), id: String(id) }, { ignore: [404] });
      return;
    }
    const after = change['after'] as Json;
    const id = after['id'] as number;
    await pg.query(sql, COLUMNS[table].map(([n]) => after[n] ?? null));
    await redis.set(redisKey(task.targets, table, id), JSON.stringify(after));
    await es.index({ index: esIndex(task.targets, table), id: String(id), document: after });
  }

  return {
    async start() {
      await consumer.connect();
      await consumer.subscribe({ topics: [task.topic], fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          await handle(message.value);
          processed++;
        },
      });
    },
    processed: () => processed,
    async stop() {
      await consumer.disconnect();
      await clients.close();
      return {};
    },
  };
}
