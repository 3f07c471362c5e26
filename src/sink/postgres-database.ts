import pg from 'pg';
import { parse } from 'pg-connection-string';

/** Where a PostgreSQL connection goes: a connection string, or separate fields (missing ones from the environment). */
export interface PostgresTarget {
  readonly connectionString?: string | undefined;
  readonly host?: string | undefined;
  readonly port?: number | undefined;
  readonly user?: string | undefined;
  readonly database?: string | undefined;
}

/** The loopback names of one local server. */
const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/**
 * The database a connection reaches, as `host:port/database?user=<role>`, resolved the way
 * node-postgres resolves it: the connection string's parts over the fields, then $PGHOST, $PGPORT,
 * $PGUSER, $PGDATABASE, then pg's defaults (localhost, 5432, the OS user; the database defaults to
 * the user). Loopback names count as one host. Two connections with the same name can share a
 * transaction's writes: the same server, database and role.
 */
export function postgresDatabase(target: PostgresTarget, env: NodeJS.ProcessEnv = process.env): string {
  const parsed = target.connectionString === undefined ? undefined : parse(target.connectionString);
  // pg takes a value only when it is truthy (an empty host or port falls back too).
  const pick = (given: unknown, name: 'host' | 'port' | 'user' | 'database'): string | undefined => {
    const value = given || env[`PG${name.toUpperCase()}`] || pg.defaults[name];
    return value === undefined || value === null || value === '' ? undefined : String(value);
  };
  const user = pick(parsed ? parsed.user : target.user, 'user') ?? '';
  const database = pick(parsed ? parsed.database : target.database, 'database') ?? user;
  const port = Number.parseInt(pick(parsed ? parsed.port : target.port, 'port') ?? '5432', 10);
  const given = pick(parsed ? parsed.host : target.host, 'host') ?? 'localhost';
  // A host name is case-insensitive; a socket directory is a path.
  const host = given.startsWith('/') ? given : LOOPBACK.has(given.toLowerCase()) ? 'localhost' : given.toLowerCase();
  return `${host}:${port}/${database}?user=${user}`;
}
