/**
 * Mode (e): the bare batched write ceiling of one store. The corpus's rows (from the generator, no
 * Kafka, no decoding) written the way one would by hand with the same driver: batches of
 * BENCH_CEILING_BATCH records, each deduplicated by key (the last change wins), as one PostgreSQL
 * transaction (INSERT … SELECT FROM unnest(typed arrays) ON CONFLICT DO UPDATE, DELETE … = ANY),
 * one Redis pipeline (SET/DEL), or one Elasticsearch bulk request (index/delete). No position
 * guard, no tombstones, no type mapping. BENCH_CEILING_LANES writers run at once, each owning a
 * fixed set of partitions (partition % lanes), so each key's changes stay in order, as in the router.
 */
import { COLUMNS, TABLES, createCorpusGenerator, rowFor, type CorpusRecord, type TableName } from './corpus.ts';
import type { CeilingStore, ModeRunner, StoreTargets, WorkerTask } from './protocol.ts';
import { PG_TYPES, createEsIndices, createPgTables, esIndex, openStoreClients, quote, redisKey, type StoreClients } from './stores.ts';

type CeilingTask = Extract<WorkerTask, { kind: 'ceiling' }>;
export type Write = (batch: readonly CorpusRecord[]) => Promise<void>;
/** Where a bare writer writes, and the corpus seed its rows come from. */
export interface BareTarget {
  readonly seed: number;
  readonly targets: StoreTargets;
}

/** The last change per key of a batch, by table: rows to upsert and ids to delete. */
function lastChanges(batch: readonly CorpusRecord[]): Map<TableName, { upserts: CorpusRecord[]; deletes: number[] }> {
  const last = new Map<string, CorpusRecord>();
  for (const r of batch) if (r.kind !== 'tombstone') last.set(`${r.table}:${r.id}`, r);
  const out = new Map<TableName, { upserts: CorpusRecord[]; deletes: number[] }>();
  for (const r of last.values()) {
    let t = out.get(r.table);
    if (!t) out.set(r.table, (t = { upserts: [], deletes: [] }));
    if (r.kind === 'd') t.deletes.push(r.id);
    else t.upserts.push(r);
  }
  return out;
}

function postgresWriter(task: BareTarget, clients: StoreClients): Write {
  const schema = quote(task.targets.pgSchema);
  const upsertSql = new Map<TableName, string>(
    TABLES.map((table) => {
      const cols = COLUMNS[table];
      const names = cols.map(([n]) => quote(n)).join(', ');
      const arrays = cols.map(([, kind], i) => `$${i + 1}::${PG_TYPES[kind]}[]`).join(', ');
      const set = cols.filter(([n]) => n !== 'id').map(([n]) => `${quote(n)} = EXCLUDED.${quote(n)}`).join(', ');
      return [table, `INSERT INTO ${schema}.${quote(table)} (${names}) SELECT * FROM unnest(${arrays}) ON CONFLICT (id) DO UPDATE SET ${set}`];
    }),
  );
  return async (batch) => {
    const client = await clients.pg.connect();
    try {
      await client.query('BEGIN');
      for (const [table, { upserts, deletes }] of lastChanges(batch)) {
        if (upserts.length > 0) {
          const rows = upserts.map((r) => rowFor(task.seed, r.table, r.id, r.lsn));
          await client.query(upsertSql.get(table)!, COLUMNS[table].map(([n]) => rows.map((row) => row[n] ?? null)));
        }
        if (deletes.length > 0) await client.query(`DELETE FROM ${schema}.${quote(table)} WHERE id = ANY($1::bigint[])`, [deletes]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  };
}

function redisWriter(task: BareTarget, clients: StoreClients): Write {
  return async (batch) => {
    const pipe = clients.redis.pipeline();
    for (const [table, { upserts, deletes }] of lastChanges(batch)) {
      for (const r of upserts) pipe.set(redisKey(task.targets, table, r.id), JSON.stringify(rowFor(task.seed, table, r.id, r.lsn)));
      for (const id of deletes) pipe.del(redisKey(task.targets, table, id));
    }
    const replies = await pipe.exec();
    const failed = replies?.find(([err]) => err);
    if (failed) throw failed[0];
  };
}

function elasticsearchWriter(task: BareTarget, clients: StoreClients): Write {
  return async (batch) => {
    const operations: object[] = [];
    for (const [table, { upserts, deletes }] of lastChanges(batch)) {
      const index = esIndex(task.targets, table);
      for (const r of upserts) operations.push({ index: { _index: index, _id: String(r.id) } }, rowFor(task.seed, table, r.id, r.lsn));
      for (const id of deletes) operations.push({ delete: { _index: index, _id: String(id) } });
    }
    if (operations.length === 0) return;
    const res = await clients.es.bulk({ operations });
    const failed = res.items.find((item) => Object.values(item)[0]?.error);
    if (failed) throw new Error(`bulk item failed: ${JSON.stringify(failed)}`);
  };
}

/** The bare batched write of one store (also the latency floor's, bench/mode-floor.ts). */
export function bareWriter(store: CeilingStore, target: BareTarget, clients: StoreClients): Write {
  if (store === 'postgres') return postgresWriter(target, clients);
  if (store === 'redis') return redisWriter(target, clients);
  return elasticsearchWriter(target, clients);
}

export async function prepareCeiling(task: CeilingTask): Promise<ModeRunner> {
  const clients = openStoreClients(task.servers, task.lanes);
  if (task.store === 'postgres') await createPgTables(clients.pg, task.targets.pgSchema);
  if (task.store === 'elasticsearch') await createEsIndices(clients.es, task.targets);
  // Connections are opened before the clock starts.
  await Promise.all(Array.from({ length: task.lanes }, () => clients.pg.query('SELECT 1')));
  await clients.redis.ping();
  await clients.es.cluster.health({});
  const write = bareWriter(task.store, { seed: task.corpus.seed, targets: task.targets }, clients);

  let processed = 0;
  async function run(): Promise<void> {
    const gen = createCorpusGenerator(task.corpus.seed, task.corpus.partitions);
    const lanes = Array.from({ length: task.lanes }, () => ({ pending: [] as CorpusRecord[], inflight: Promise.resolve() }));
    let failure: { error: unknown } | undefined;
    const flush = async (lane: (typeof lanes)[number]) => {
      const batch = lane.pending;
      lane.pending = [];
      await lane.inflight; // one write in flight per lane: its keys stay in order
      if (failure) throw failure.error;
      lane.inflight = write(batch).then(
        () => void (processed += batch.length),
        (error: unknown) => void (failure ??= { error }),
      );
    };
    for (let i = 0; i < task.corpus.events; i++) {
      const r = gen.next();
      const lane = lanes[r.partition % task.lanes]!;
      lane.pending.push(r);
      if (lane.pending.length >= task.batch) await flush(lane);
    }
    for (const lane of lanes) if (lane.pending.length > 0) await flush(lane);
    await Promise.all(lanes.map((l) => l.inflight));
    if (failure) throw failure.error;
  }

  let resolveFinished: () => void = () => undefined;
  let rejectFinished: (err: unknown) => void = () => undefined;
  const finished = new Promise<void>((resolve, reject) => {
    resolveFinished = resolve;
    rejectFinished = reject;
  });
  return {
    async start() {
      run().then(resolveFinished, rejectFinished);
    },
    finished,
    processed: () => processed,
    async stop() {
      await clients.close();
      return {};
    },
  };
}
