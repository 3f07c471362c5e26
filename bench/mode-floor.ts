/**
 * The latency floor: the least a pipeline from Kafka into the three stores can do, as one would
 * write it by hand with the same drivers, so the router's latency has a figure of the same run and
 * machine to stand against. kafkajs eachBatch with the router's consumer defaults; every batch
 * fetched while a write is in flight waits and joins the next one (one write at a time, all
 * partitions combined, as the router combines a sink's partitions); each write parses the values
 * (table, id, LSN), writes the last change per key to PostgreSQL, Redis and Elasticsearch at once
 * with the ceiling's bare writers (bench/mode-ceiling.ts: no position guard, no type mapping, no
 * tombstones, no dead-letter queue), then commits every partition it covered in one request.
 * Latency per record: from its Kafka timestamp (its due time) to that commit's acknowledgement.
 */
import type { Batch } from 'kafkajs';
import { TABLES, type CorpusRecord, type TableName } from './corpus.ts';
import { bareWriter, type Write } from './mode-ceiling.ts';
import { bareConsumer } from './mode-raw.ts';
import { latencyRecorder } from './mode-router.ts';
import type { ModeRunner, WorkerTask } from './protocol.ts';
import { createEsIndices, createPgTables, openStoreClients } from './stores.ts';

type FloorTask = Extract<WorkerTask, { kind: 'floor' }>;

interface Envelope {
  readonly op?: string;
  readonly source?: { readonly table?: string; readonly lsn?: number };
  readonly payload?: Envelope;
}

/** The corpus record a Kafka record holds (undefined: a tombstone, which the bare writers skip). */
function recordOf(partition: number, key: Buffer | null, value: Buffer | null): CorpusRecord | undefined {
  if (value === null || key === null) return undefined;
  const parsed = JSON.parse(value.toString()) as Envelope;
  const env = parsed.payload ?? parsed;
  const k = JSON.parse(key.toString()) as { id?: number; payload?: { id?: number } };
  const table = env.source?.table as TableName;
  const id = k.payload?.id ?? k.id;
  const lsn = env.source?.lsn;
  if (!TABLES.includes(table) || id === undefined || lsn === undefined || (env.op !== 'c' && env.op !== 'u' && env.op !== 'd')) {
    throw new Error(`floor: not a corpus record at partition ${partition}: ${value.toString().slice(0, 200)}`);
  }
  return { table, id, lsn, kind: env.op, partition, withSchema: parsed.payload !== undefined };
}

interface Pending {
  readonly batch: Batch;
  readonly done: () => void;
  readonly failed: (err: unknown) => void;
}

export async function prepareFloor(task: FloorTask): Promise<ModeRunner> {
  const { consumer, defaults } = bareConsumer('floor', task);
  const clients = openStoreClients(task.servers, 2);
  await createPgTables(clients.pg, task.targets.pgSchema);
  await createEsIndices(clients.es, task.targets);
  const target = { seed: task.seed, targets: task.targets };
  const writers: readonly Write[] = (['postgres', 'redis', 'elasticsearch'] as const).map((s) => bareWriter(s, target, clients));
  const latency = latencyRecorder();
  let processed = 0;
  let queue: Pending[] = [];
  let writing = false;

  async function writeQueued(): Promise<void> {
    writing = true;
    try {
      while (queue.length > 0) {
        const taken = queue;
        queue = [];
        try {
          const records = taken.flatMap(({ batch }) => batch.messages.map((m) => recordOf(batch.partition, m.key, m.value)).filter((r) => r !== undefined));
          await Promise.all(writers.map((w) => w(records)));
          const last = new Map<number, string>();
          for (const { batch } of taken) last.set(batch.partition, batch.lastOffset());
          await consumer.commitOffsets([...last].map(([partition, offset]) => ({ topic: task.topic, partition, offset: String(BigInt(offset) + 1n) })));
          const ackMs = Date.now();
          for (const { batch } of taken) for (const m of batch.messages) latency.record(ackMs - Number(m.timestamp));
          processed += taken.reduce((n, { batch }) => n + batch.messages.length, 0);
          for (const p of taken) p.done();
        } catch (err) {
          for (const p of taken) p.failed(err);
        }
      }
    } finally {
      writing = false;
    }
  }

  return {
    async start() {
      await Promise.all([clients.pg.query('SELECT 1'), clients.redis.ping(), clients.es.cluster.health({})]);
      await consumer.connect();
      await consumer.subscribe({ topics: [task.topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: defaults.partitions_consumed_concurrently,
        eachBatchAutoResolve: true,
        eachBatch: async ({ batch }) => {
          if (batch.messages.length === 0) return;
          const written = new Promise<void>((done, failed) => queue.push({ batch, done, failed }));
          if (!writing) void writeQueued();
          await written;
        },
      });
    },
    processed: () => processed,
    async stop(window) {
      await consumer.disconnect();
      await clients.close();
      return { latency: latency.stats(window) };
    },
  };
}
