import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { SinkError } from '../../src/errors.ts';
import { postgresDatabase } from '../../src/sink/postgres-database.ts';
import { defineSink, once, type Sink } from '../../src/sink/sink.ts';
import { Planner } from './batch-plan.ts';
import { BatchWriter } from './batch-writer.ts';
import { isConnectionLost, toSinkError } from './classify.ts';
import { postgresConfigSchema, type PostgresConfig } from './config.ts';
import { cleanupSql } from './statements.ts';
import { TableCatalog } from './table-catalog.ts';

export const configSchema = postgresConfigSchema;

type Connection = PostgresConfig['connection'];

async function tlsOptions(ssl: Connection['ssl']): Promise<boolean | ConnectionOptions> {
  if (typeof ssl === 'boolean') return ssl;
  const read = (path: string | undefined) => (path ? readFile(path, 'utf8') : Promise.resolve(undefined));
  const [ca, cert, key] = await Promise.all([read(ssl.ca_file), read(ssl.cert_file), read(ssl.key_file)]);
  return { ca, cert, key, rejectUnauthorized: ssl.reject_unauthorized };
}

async function poolConfig(c: Connection): Promise<pg.PoolConfig> {
  return {
    ...(c.connection_string !== undefined
      ? { connectionString: c.connection_string }
      : { host: c.host, port: c.port, user: c.user, password: c.password, database: c.database }),
    ssl: await tlsOptions(c.ssl),
    max: c.pool_size,
    statement_timeout: c.statement_timeout_ms === 0 ? false : c.statement_timeout_ms,
    connectionTimeoutMillis: c.connect_timeout_ms,
    application_name: c.application_name,
    keepAlive: true,
  };
}

/** Where the sink connects, for logs and messages: never the password or the connection string. */
function describeServer(c: Connection): string {
  if (c.connection_string !== undefined) return 'the server of connection_string';
  return `${c.host ?? process.env['PGHOST'] ?? 'localhost'}:${c.port ?? process.env['PGPORT'] ?? 5432}/${c.database ?? process.env['PGDATABASE'] ?? ''}`;
}

/**
 * PostgreSQL: batched, idempotent upserts and deletes into tables the sink creates and evolves.
 * Each row carries its source position; tombstones of deletes live in a side table per target.
 * The same writer also writes inside a transaction a caller holds open on this database (`inTransaction`).
 */
export const postgresSink = defineSink({
  kind: 'postgres',
  configSchema,
  create(name, config, { logger }): Sink {
    const log = logger.child({ component: 'sink', sink: name, kind: 'postgres' });
    const server = describeServer(config.connection);
    const catalog = new TableCatalog({
      autoCreate: config.auto_create,
      evolve: config.evolve,
      positionColumn: config.position_column,
      log,
    });
    const writer = new BatchWriter({
      sink: name,
      positionColumn: config.position_column,
      catalog,
      planner: new Planner(name, config),
      log,
    });
    let pool: pg.Pool | undefined;
    let timer: NodeJS.Timeout | undefined;
    let cleaning: Promise<void> | undefined;

    const cleanup = async (p: pg.Pool) => {
      for (const meta of catalog.known()) {
        if (!meta.tombstoneColumns) continue;
        try {
          const res = await p.query(cleanupSql(meta), [config.tombstone_retention]);
          if (res.rowCount) log.debug({ table: meta.ref.tombstoneQualified, removed: res.rowCount }, 'expired tombstones removed');
        } catch (err) {
          log.warn({ table: meta.ref.tombstoneQualified, err: String(err) }, 'tombstone cleanup failed');
        }
      }
    };

    return {
      name,
      kind: 'postgres',
      async start() {
        let p: pg.Pool;
        try {
          p = new pg.Pool(await poolConfig(config.connection));
        } catch (err) {
          throw new SinkError(name, `invalid connection settings: ${String(err)}`, { code: 'PG_CONFIG', retriable: false, cause: err });
        }
        // An idle connection that dies is replaced on the next checkout; without a listener it would crash the process.
        p.on('error', (err) => log.warn({ err: err.message }, 'idle PostgreSQL connection failed'));
        try {
          await p.query('SELECT 1');
        } catch (err) {
          await p.end().catch(() => undefined);
          throw toSinkError(name, `cannot connect to ${server}`, err);
        }
        pool = p;
        if (config.tombstone_cleanup_interval > 0) {
          timer = setInterval(() => {
            cleaning ??= cleanup(p).finally(() => (cleaning = undefined));
          }, config.tombstone_cleanup_interval);
          timer.unref();
        }
        log.info({ server, pool_size: config.connection.pool_size }, 'postgres sink connected');
      },
      async write(batch) {
        if (!pool) throw new SinkError(name, 'write before start', { code: 'NOT_STARTED', retriable: false });
        if (batch.length === 0) return [];
        let client: pg.PoolClient;
        try {
          client = await pool.connect();
        } catch (err) {
          throw toSinkError(name, `cannot connect to ${server}`, err);
        }
        let broken = false;
        // pg-pool takes its idle 'error' listener off a checked-out client: without this one, a
        // connection lost mid-write (server restart, failover, pg_terminate_backend) would be an
        // uncaught exception. The write's queries reject on their own; this keeps the process alive.
        const onError = (err: Error) => {
          broken = true;
          log.warn({ err: err.message }, 'PostgreSQL connection lost during a write');
        };
        client.on('error', onError);
        try {
          return await writer.write(client, batch);
        } catch (err) {
          broken ||= isConnectionLost(err);
          throw toSinkError(name, `batch of ${batch.length} records failed`, err);
        } finally {
          client.removeListener('error', onError);
          client.release(broken);
        }
      },
      inTransaction: {
        database: postgresDatabase({
          connectionString: config.connection.connection_string,
          host: config.connection.host,
          port: config.connection.port,
          user: config.connection.user,
          database: config.connection.database,
        }),
        async write(client, batch) {
          if (batch.length === 0) return [];
          try {
            return await writer.write(client, batch, 'nested');
          } catch (err) {
            throw toSinkError(name, `batch of ${batch.length} records failed in the caller's transaction`, err);
          }
        },
      },
      close: once(async () => {
        clearInterval(timer);
        await cleaning;
        const p = pool;
        pool = undefined;
        await p?.end();
      }),
    };
  },
});
