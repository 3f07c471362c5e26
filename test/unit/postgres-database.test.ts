import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { postgresDatabase } from '../../src/sink/postgres-database.ts';

describe('postgresDatabase: which database a connection reaches', () => {
  const none = {};

  it('reads a connection string; loopback names are one host', () => {
    const name = 'localhost:5432/test?user=postgres';
    expect(postgresDatabase({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' }, none)).toBe(name);
    expect(postgresDatabase({ connectionString: 'postgresql://postgres:secret@localhost/test' }, none)).toBe(name);
    expect(postgresDatabase({ connectionString: 'postgres://postgres@[::1]:5432/test?sslmode=disable' }, none)).toBe(name);
    expect(postgresDatabase({ connectionString: 'postgres://postgres@LocalHost:5432/test' }, none)).toBe(name);
  });

  it('the separate fields name the same database as the equivalent connection string', () => {
    const fields = postgresDatabase({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' }, none);
    expect(fields).toBe(postgresDatabase({ connectionString: 'postgres://postgres@localhost:5432/test' }, none));
  });

  it('tells apart another database, port, server or role', () => {
    const base = postgresDatabase({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' }, none);
    for (const other of [
      'postgres://postgres@127.0.0.1:5432/other',
      'postgres://postgres@127.0.0.1:5433/test',
      'postgres://postgres@db.example.com:5432/test',
      'postgres://reader@127.0.0.1:5432/test',
    ]) {
      expect(postgresDatabase({ connectionString: other }, none), other).not.toBe(base);
    }
  });

  it("falls back as node-postgres does: $PGHOST, $PGPORT, $PGUSER, $PGDATABASE, then pg's defaults; the database defaults to the user", () => {
    const env = { PGHOST: 'db.example.com', PGPORT: '6543', PGUSER: 'app', PGDATABASE: 'shop' };
    expect(postgresDatabase({}, env)).toBe('db.example.com:6543/shop?user=app');
    expect(postgresDatabase({ connectionString: 'postgres:///' }, env)).toBe('db.example.com:6543/shop?user=app');
    expect(postgresDatabase({ host: 'other', database: 'sales' }, env)).toBe('other:6543/sales?user=app');
    expect(postgresDatabase({ user: 'ops' }, { PGHOST: '127.0.0.1' })).toBe('localhost:5432/ops?user=ops');
    expect(postgresDatabase({}, none)).toBe(`localhost:5432/${pg.defaults.user ?? ''}?user=${pg.defaults.user ?? ''}`);
  });

  it('keeps a socket directory as a path', () => {
    expect(postgresDatabase({ connectionString: 'postgres://postgres@/test?host=/var/run/PostgreSQL' }, none)).toBe(
      '/var/run/PostgreSQL:5432/test?user=postgres',
    );
  });
});
