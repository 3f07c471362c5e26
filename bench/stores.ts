/**
 * The three stores as the benchmark sees them: per-run targets (a PostgreSQL schema, a Redis key
 * prefix, Elasticsearch indices), the tables and indices the hand-written writers need, the
 * correctness gate (final state = the last change per key of the corpus), and cleanup.
 */
import { Client as EsClient } from '@elastic/elasticsearch';
import { Redis } from 'ioredis';
import pg from 'pg';
import { COLUMNS, TABLES, rowFor, type ColumnKind, type CorpusExpectation, type TableName } from './corpus.ts';
import type { Servers, StoreTargets } from './protocol.ts';

export interface StoreClients {
  readonly pg: pg.Pool;
  readonly redis: Redis;
  readonly es: EsClient;
  close(): Promise<void>;
}

export function openStoreClients(servers: Servers, pgConnections = 4): StoreClients {
  const pool = new pg.Pool({ connectionString: servers.pgUrl, max: pgConnections, application_name: 'cdc-bench' });
  pool.on('error', () => undefined);
  const redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: 3 });
  const es = new EsClient({ node: servers.esUrl, requestTimeout: 120_000 });
  return {
    pg: pool,
    redis,
    es,
    async close() {
      await Promise.allSettled([pool.end(), es.close()]);
      redis.disconnect();
    },
  };
}

/** Names for one run; lowercase and without glob or index-name specials, so no escaping is needed. */
export function targetsFor(runId: string, label: string): StoreTargets {
  const id = `${runId}_${label}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  return { pgSchema: `cdc_bench_${id}`, redisPrefix: `cdc-bench:${id}:`, esPrefix: `cdc-bench-${id.replace(/_/g, '-')}` };
}

export const quote = (identifier: string) => `"${identifier.replace(/"/g, '""')}"`;
export const esIndex = (targets: StoreTargets, table: TableName) => `${targets.esPrefix}-${table}`;
export const redisKey = (targets: StoreTargets, table: TableName, id: number) => `${targets.redisPrefix}${table}:${id}`;

export const PG_TYPES: Readonly<Record<ColumnKind, string>> = { int: 'bigint', text: 'text', bool: 'boolean' };

/** Tables as one would create them by hand for the corpus (the hand-written writers' targets). */
export async function createPgTables(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${quote(schema)}`);
  for (const table of TABLES) {
    const cols = COLUMNS[table].map(([name, kind]) => `${quote(name)} ${PG_TYPES[kind]}${name === 'id' ? ' PRIMARY KEY' : ''}`);
    await pool.query(`CREATE TABLE IF NOT EXISTS ${quote(schema)}.${quote(table)} (${cols.join(', ')})`);
  }
}

export async function createEsIndices(es: EsClient, targets: StoreTargets): Promise<void> {
  for (const table of TABLES) {
    await es.indices.create({ index: esIndex(targets, table), settings: { number_of_replicas: 0 } });
  }
}

async function redisKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** Removes everything a run wrote; each step runs even when another fails. */
export async function dropTargets(clients: StoreClients, targets: StoreTargets): Promise<string[]> {
  const problems: string[] = [];
  const step = async (what: string, fn: () => Promise<unknown>) => {
    await fn().catch((err: unknown) => problems.push(`${what}: ${String(err)}`));
  };
  await step('drop schema', () => clients.pg.query(`DROP SCHEMA IF EXISTS ${quote(targets.pgSchema)} CASCADE`));
  await step('delete redis keys', async () => {
    const keys = await redisKeys(clients.redis, `${targets.redisPrefix}*`);
    for (let i = 0; i < keys.length; i += 1_000) await clients.redis.unlink(...keys.slice(i, i + 1_000));
  });
  await step('delete indices', () =>
    clients.es.indices.delete({ index: `${targets.esPrefix}-*`, ignore_unavailable: true, allow_no_indices: true }),
  );
  return problems;
}

/** The first difference between an expected row and a stored one (columns starting `__cdc` are the sinks' own). */
function rowDifference(expected: Readonly<Record<string, unknown>>, actual: Readonly<Record<string, unknown>>): string | undefined {
  for (const [k, v] of Object.entries(expected)) {
    if (actual[k] !== v) return `${k}: expected ${JSON.stringify(v)}, found ${JSON.stringify(actual[k])}`;
  }
  for (const k of Object.keys(actual)) {
    if (!(k in expected) && !k.startsWith('__cdc')) return `unexpected column ${k}`;
  }
  return undefined;
}

const MAX_PROBLEMS = 5;

interface Check {
  readonly problems: string[];
  note(problem: string): void;
}

function check(store: string): Check {
  const problems: string[] = [];
  let more = 0;
  return {
    problems,
    note(problem) {
      if (problems.length < MAX_PROBLEMS) problems.push(`${store}: ${problem}`);
      else if (more++ === 0) problems.push(`${store}: (more problems not listed)`);
    },
  };
}

async function verifyPostgres(clients: StoreClients, targets: StoreTargets, expectation: CorpusExpectation, seed: number): Promise<string[]> {
  const c = check('postgres');
  for (const table of TABLES) {
    const live = expectation.live.get(table)!;
    let seen = 0;
    let after = -1;
    for (;;) {
      // t.id: a bare `id` in ORDER BY names the text output column, and pages would go in text order.
      const res = await clients.pg.query<{ id: string; row: Record<string, unknown> }>(
        `SELECT id::text AS id, to_jsonb(t) AS row FROM ${quote(targets.pgSchema)}.${quote(table)} t WHERE t.id > $1 ORDER BY t.id LIMIT 5000`,
        [after],
      );
      for (const { id: text, row } of res.rows) {
        const id = Number(text);
        seen++;
        const lsn = live.get(id);
        if (lsn === undefined) c.note(`${table} ${id} should not exist`);
        else {
          const diff = rowDifference(rowFor(seed, table, id, lsn), row);
          if (diff) c.note(`${table} ${id}: ${diff}`);
        }
        after = id;
      }
      if (res.rows.length < 5000) break;
    }
    if (seen !== live.size) c.note(`${table}: ${seen} rows, expected ${live.size}`);
  }
  return c.problems;
}

async function verifyRedis(clients: StoreClients, targets: StoreTargets, expectation: CorpusExpectation, seed: number): Promise<string[]> {
  const c = check('redis');
  for (const table of TABLES) {
    const live = [...expectation.live.get(table)!];
    for (let i = 0; i < live.length; i += 1_000) {
      const chunk = live.slice(i, i + 1_000);
      const values = await clients.redis.mget(...chunk.map(([id]) => redisKey(targets, table, id)));
      chunk.forEach(([id, lsn], j) => {
        const v = values[j];
        if (v === null || v === undefined) return c.note(`${table} ${id} missing`);
        const diff = rowDifference(rowFor(seed, table, id, lsn), JSON.parse(v) as Record<string, unknown>);
        if (diff) c.note(`${table} ${id}: ${diff}`);
      });
    }
    const keys = await redisKeys(clients.redis, `${targets.redisPrefix}${table}:*`);
    if (keys.length !== live.length) c.note(`${table}: ${keys.length} keys, expected ${live.length}`);
  }
  return c.problems;
}

async function verifyElasticsearch(clients: StoreClients, targets: StoreTargets, expectation: CorpusExpectation, seed: number): Promise<string[]> {
  const c = check('elasticsearch');
  await clients.es.indices.refresh({ index: `${targets.esPrefix}-*` });
  for (const table of TABLES) {
    const index = esIndex(targets, table);
    const live = [...expectation.live.get(table)!];
    for (let i = 0; i < live.length; i += 1_000) {
      const chunk = live.slice(i, i + 1_000);
      const res = await clients.es.mget<Record<string, unknown>>({ index, ids: chunk.map(([id]) => String(id)) });
      chunk.forEach(([id, lsn], j) => {
        const doc = res.docs[j];
        if (!doc || !('found' in doc) || !doc.found || !doc._source) return c.note(`${table} ${id} missing`);
        const diff = rowDifference(rowFor(seed, table, id, lsn), doc._source);
        if (diff) c.note(`${table} ${id}: ${diff}`);
      });
    }
    const { count } = await clients.es.count({ index });
    if (count !== live.length) c.note(`${table}: ${count} documents, expected ${live.length}`);
  }
  return c.problems;
}

/** The correctness gate: every store holds exactly the live rows of the corpus, each as its last change wrote it. */
export async function verifyStores(
  clients: StoreClients,
  targets: StoreTargets,
  expectation: CorpusExpectation,
  seed: number,
): Promise<string[]> {
  const guard = (store: string, p: Promise<string[]>) => p.catch((err: unknown) => [`${store}: cannot read: ${String(err)}`]);
  const results = await Promise.all([
    guard('postgres', verifyPostgres(clients, targets, expectation, seed)),
    guard('redis', verifyRedis(clients, targets, expectation, seed)),
    guard('elasticsearch', verifyElasticsearch(clients, targets, expectation, seed)),
  ]);
  return results.flat();
}
