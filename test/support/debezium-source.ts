import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { testKafka, uniqueName, waitUntil } from './kafka.ts';

/**
 * Real CDC for integration tests: the private source PostgreSQL (scripts/source-pg.sh, port 5433)
 * and Kafka Connect with Debezium (scripts/connect.sh), each test with its own source database and
 * its own connector (name, topic.prefix, replication slot and publication), removed afterwards.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

export const SOURCE_PG_PORT = Number(process.env['SOURCE_PG_PORT'] ?? '5433');
/** The connector file every test registers a renamed copy of. */
export const CONNECTOR_FILE = 'connectors/debezium/shop-postgres.json';

/** Runs one of the project's server scripts; its output is kept for the error when it fails. */
async function script(name: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('bash', [`scripts/${name}.sh`, ...args], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
    return `${stdout}${stderr}`;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`scripts/${name}.sh ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? String(err)}`, { cause: err });
  }
}

/**
 * Brings up what real CDC needs, in dependency order: Kafka, the source PostgreSQL, then Connect.
 * Idempotent and quick when they run already (the global setup usually started them).
 */
export async function ensureCdcServers(): Promise<void> {
  await script('kafka', ['up']);
  await script('source-pg', ['up']);
  await script('connect', ['up']);
}

/** A lowercase name usable as database, slot, publication, topic prefix and connector name. */
export function uniqueSourceName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomUUID().slice(0, 6)}`.toLowerCase();
}

function quoteIdent(id: string): string {
  return `"${id.replace(/"/g, '""')}"`;
}

/** A client of the source cluster; UTC, so that timestamptz prints the same on every server. */
export async function sourceClient(database: string): Promise<pg.Client> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: SOURCE_PG_PORT,
    user: 'postgres',
    database,
    options: '-c TimeZone=UTC',
  });
  await client.connect();
  return client;
}

export interface SourceDatabase {
  readonly name: string;
  /** Connected to the database, session TimeZone UTC. */
  readonly client: pg.Client;
  /** Drops the database (after its connectors were dropped: a slot pins its database). */
  drop(): Promise<void>;
}

/** Creates an empty database on the source cluster. */
export async function createSourceDatabase(name: string): Promise<SourceDatabase> {
  const admin = await sourceClient('postgres');
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
  } finally {
    await admin.end();
  }
  const client = await sourceClient(name);
  let dropped: Promise<void> | undefined;
  return {
    name,
    client,
    drop() {
      dropped ??= (async () => {
        await client.end().catch(() => undefined);
        const a = await sourceClient('postgres');
        try {
          await a.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
        } finally {
          await a.end();
        }
      })();
      return dropped;
    },
  };
}

export interface DebeziumConnector {
  readonly name: string;
  /** topic.prefix: topics are `<prefix>.<schema>.<table>` and `<prefix>.transaction`. */
  readonly prefix: string;
  readonly slot: string;
  readonly publication: string;
  readonly database: string;
  topicOf(table: string, schema?: string): string;
  readonly transactionTopic: string;
  readonly heartbeatTopic: string;
  /** Deletes the connector, then its replication slot and publication. Safe to call twice. */
  drop(): Promise<void>;
}

export interface ConnectorOptions {
  /** Connector name; also its topic prefix, slot and publication (one name, all unique per test). */
  readonly name: string;
  readonly database: string;
  /** `<schema>.<table>` of every captured table; they must exist (the publication is filtered). */
  readonly tables: readonly string[];
  /** More overrides of the connector file's config. */
  readonly config?: Readonly<Record<string, string>>;
}

/**
 * Registers a renamed copy of connectors/debezium/shop-postgres.json through `connect.sh register`
 * (which waits for the connector and its task to run; the snapshot may still be going on).
 */
export async function registerConnector(options: ConnectorOptions): Promise<DebeziumConnector> {
  const { name, database } = options;
  const overrides: Record<string, string> = {
    name,
    'topic.prefix': name,
    'slot.name': name,
    'publication.name': name,
    'database.port': String(SOURCE_PG_PORT),
    'database.dbname': database,
    'table.include.list': options.tables.join(','),
    ...options.config,
  };
  let dropped: Promise<void> | undefined;
  const connector: DebeziumConnector = {
    name,
    prefix: name,
    slot: name,
    publication: name,
    database,
    topicOf: (table, schema = 'public') => `${name}.${schema}.${table}`,
    transactionTopic: `${name}.transaction`,
    heartbeatTopic: `__debezium-heartbeat.${name}`,
    drop() {
      dropped ??= dropConnector(connector);
      return dropped;
    },
  };
  try {
    await script('connect', ['register', CONNECTOR_FILE, ...Object.entries(overrides).map(([k, v]) => `${k}=${v}`)]);
  } catch (err) {
    // A connector that failed to start may still have made its slot.
    await connector.drop().catch(() => undefined);
    throw err;
  }
  return connector;
}

async function dropConnector(c: DebeziumConnector): Promise<void> {
  await script('connect', ['delete', c.name]);
  const admin = await sourceClient('postgres');
  try {
    // The task lets go of the slot shortly after the delete; a walsender that lingers is ended.
    const started = Date.now();
    await waitUntil(
      async () => {
        const res = await admin.query<{ active: boolean; pid: number | null }>(
          'SELECT active, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
          [c.slot],
        );
        const slot = res.rows[0];
        if (!slot || !slot.active) return true;
        if (Date.now() - started > 10_000 && slot.pid !== null) await admin.query('SELECT pg_terminate_backend($1)', [slot.pid]);
        return false;
      },
      30_000,
      `replication slot ${c.slot} to be released`,
    );
    await admin.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [c.slot]);
  } finally {
    await admin.end();
  }
  // Publications live in the captured database, which the caller may have dropped already.
  const db = await sourceClient(c.database).catch(() => undefined);
  if (db) {
    try {
      await db.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(c.publication)}`);
    } finally {
      await db.end();
    }
  }
}

export interface TopicRecord {
  readonly topic: string;
  readonly key: string | null;
  readonly value: string | null;
}

/**
 * Every record of the topics, up to their end offsets when called, as text: what Debezium wrote.
 * Reads in a throwaway consumer group, deleted afterwards.
 */
export async function readTopics(topics: readonly string[], timeoutMs = 60_000): Promise<TopicRecord[]> {
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  const groupId = uniqueName('e2e-read');
  const consumer = kafka.consumer({ groupId });
  try {
    const remaining = new Map<string, bigint>();
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) if (BigInt(p.high) > 0n) remaining.set(`${topic}/${p.partition}`, BigInt(p.high));
    }
    const records: TopicRecord[] = [];
    if (remaining.size === 0) return records;
    await consumer.connect();
    await consumer.subscribe({ topics: [...topics], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`reading ${topics.join(', ')} took over ${timeoutMs} ms`)), timeoutMs);
      void consumer
        .run({
          eachMessage: async ({ topic, partition, message }) => {
            records.push({ topic, key: message.key?.toString('utf8') ?? null, value: message.value?.toString('utf8') ?? null });
            const id = `${topic}/${partition}`;
            if (BigInt(message.offset) + 1n >= (remaining.get(id) ?? 0n)) remaining.delete(id);
            if (remaining.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
    return records;
  } finally {
    await consumer.disconnect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
}
