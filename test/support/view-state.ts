import pg from 'pg';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { SinkError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import type { ChangeEvent, Row } from '../../src/model/change-event.ts';
import { OK, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { StateStore } from '../../src/view/state-store.ts';
import { uniqueName } from './kafka.ts';
import { PG_URL } from './stores.ts';

/** What a view sink needs beside its plan and output: state in a schema of its own in the shared PostgreSQL. */
export interface ViewState {
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly store: StateStore;
  readonly events: RouterEvents;
  readonly logger: Logger;
}

/**
 * View state for the enclosing describe: the schema is created before its tests and dropped, with
 * the pool ended, after them. Call it in the describe's body (it registers the hooks).
 */
export function viewState(prefix: string, poolSize: number): ViewState {
  const pool = new pg.Pool({ connectionString: PG_URL, max: poolSize });
  const schema = uniqueName(prefix).replace(/-/g, '_').toLowerCase();
  const store = new StateStore(schema);

  beforeAll(async () => {
    const client = await pool.connect();
    try {
      await store.ensureSchema(client);
    } finally {
      client.release();
    }
  });

  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  });

  return { pool, schema, store, events: new RouterEvents(), logger: pino({ level: 'silent' }) };
}

/** A view's output sink that records what it is given (and can be told to fail its next writes). */
export interface Recorder extends Sink {
  /** Latest result per key, as a sink with a stale-write guard holds it (null: deleted). */
  readonly rows: Map<string, { version: bigint; row: Row | null }>;
  readonly writes: ChangeEvent[][];
  failNext: number;
}

export function recorder(name = 'out'): Recorder {
  const rows = new Map<string, { version: bigint; row: Row | null }>();
  const writes: ChangeEvent[][] = [];
  const sink: Recorder = {
    name,
    kind: 'memory',
    rows,
    writes,
    failNext: 0,
    start: () => Promise.resolve(),
    close: () => Promise.resolve(),
    write(batch): Promise<readonly SinkResult[]> {
      if (sink.failNext > 0) {
        sink.failNext--;
        return Promise.reject(new SinkError(name, 'down for the test', { code: 'DOWN', retriable: true }));
      }
      writes.push([...batch]);
      for (const e of batch) {
        const key = JSON.stringify(e.key);
        const version = e.position.parts[0]!;
        const held = rows.get(key);
        if (held && held.version >= version) continue;
        rows.set(key, { version, row: e.after === null ? null : { ...e.after } });
      }
      return Promise.resolve(batch.map(() => OK));
    },
  };
  return sink;
}

/** The results a recorder holds, deleted ones left out. */
export const live = (r: Recorder): Record<string, Row> =>
  Object.fromEntries([...r.rows].filter(([, v]) => v.row !== null).map(([k, v]) => [k, v.row!]));
