import { Client as EsClient } from '@elastic/elasticsearch';
import { Redis } from 'ioredis';
import pg from 'pg';

export const PG_URL = process.env['TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
export const ES_URL = process.env['TEST_ES_URL'] ?? `http://127.0.0.1:${process.env['ES_PORT'] ?? '9200'}`;

/** Clients of the three stores for checking what sinks wrote, and cleaning up after a test. */
export interface Stores {
  readonly pg: pg.Client;
  readonly redis: Redis;
  readonly es: EsClient;
  /** Rows of a PostgreSQL table as JSON values (to_jsonb). */
  pgRows(schema: string, table: string): Promise<Record<string, unknown>[]>;
  /** Values of every Redis key under a prefix (JSON mode values parsed). */
  redisJson(prefix: string): Promise<Map<string, Record<string, unknown>>>;
  /** Documents of an index by id. */
  esDocs(index: string): Promise<Map<string, Record<string, unknown>>>;
  cleanup(opts: { pgSchemas?: string[]; redisPrefixes?: string[]; esIndexPattern?: string }): Promise<void>;
  close(): Promise<void>;
}

export async function openStores(): Promise<Stores> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  const redis = new Redis(REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 2 });
  const es = new EsClient({ node: ES_URL });
  const scanKeys = async (prefix: string) => {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys;
  };
  return {
    pg: client,
    redis,
    es,
    async pgRows(schema, table) {
      const q = (id: string) => `"${id.replace(/"/g, '""')}"`;
      const res = await client.query<{ row: Record<string, unknown> }>(`SELECT to_jsonb(t) AS row FROM ${q(schema)}.${q(table)} t`);
      return res.rows.map((r) => r.row);
    },
    async redisJson(prefix) {
      const out = new Map<string, Record<string, unknown>>();
      for (const key of await scanKeys(prefix)) {
        if (key.includes('__cdc:')) continue;
        const v = await redis.get(key);
        if (v !== null) out.set(key, JSON.parse(v) as Record<string, unknown>);
      }
      return out;
    },
    async esDocs(index) {
      await es.indices.refresh({ index });
      const res = await es.search<Record<string, unknown>>({ index, size: 10_000, query: { match_all: {} } });
      return new Map(res.hits.hits.map((h) => [h._id!, h._source!]));
    },
    async cleanup({ pgSchemas = [], redisPrefixes = [], esIndexPattern }) {
      for (const s of pgSchemas) await client.query(`DROP SCHEMA IF EXISTS "${s.replace(/"/g, '""')}" CASCADE`);
      for (const p of redisPrefixes) {
        const keys = await scanKeys(p);
        for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
      }
      if (esIndexPattern) await es.indices.delete({ index: esIndexPattern, ignore_unavailable: true, allow_no_indices: true });
    },
    async close() {
      await client.end();
      redis.disconnect();
      await es.close();
    },
  };
}

/** JSON with object members sorted: PostgreSQL's jsonb orders them its own way. */
export function canonical(v: unknown): string {
  return (
    JSON.stringify(v, (_k, x: unknown) =>
      x !== null && typeof x === 'object' && !Array.isArray(x)
        ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : x,
    ) ?? 'undefined'
  );
}
