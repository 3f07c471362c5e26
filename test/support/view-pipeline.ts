import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, expect } from 'vitest';
import { buildPipeline, type Pipeline } from '../../src/compose/pipeline.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import type { RawRecord } from '../../src/model/change-event.ts';
import type { RecordFailure } from '../../src/pipeline/contracts.ts';
import { uniqueName } from './kafka.ts';
import { PG_URL } from './stores.ts';

export const q = (id: string) => `"${id}"`;

export interface ViewPipelineOptions {
  /** Of the schema names: `<prefix>_<random>_source`, `_target` (the PostgreSQL sink's) and `_state`. */
  readonly prefix: string;
  readonly topics: readonly string[];
  /** The handlers module that defines the views. */
  readonly handlers: string;
  /** The views the config must hold, in order. */
  readonly views: readonly string[];
  /** The source tables, by name: their column definitions. */
  readonly sourceTables: Readonly<Record<string, string>>;
}

export interface ViewPipeline {
  readonly client: pg.Client;
  readonly source: string;
  readonly target: string;
  /** Every record failure the pipeline reported (each dead-lettered). */
  readonly failures: RecordFailure[];
  /** One batch through the pipeline: nothing halted, and the batch committed to its last offset. */
  process(records: readonly RawRecord[]): Promise<void>;
  /**
   * Each view's results, read by `target[view]` ($T: its table), equal what `truth[view]` says over
   * the source (`sourceSql` puts the source in), and are not empty.
   */
  expectResultsEqualSql(truth: Readonly<Record<string, string>>, target: Readonly<Record<string, string>>, sourceSql: (sql: string) => string): Promise<void>;
}

/**
 * Views of a handlers module run by the real pipeline, state in PostgreSQL, results written by the
 * PostgreSQL sink, with source tables beside them to compute the truth from. Call it in a describe's
 * body: it builds before the tests and drops every schema after.
 */
export function viewPipeline(options: ViewPipelineOptions): ViewPipeline {
  const id = uniqueName(options.prefix).replace(/-/g, '_').toLowerCase();
  const target = `${id}_target`;
  const state = `${id}_state`;
  const source = `${id}_source`;
  const client = new pg.Client({ connectionString: PG_URL });
  const failures: RecordFailure[] = [];
  let pipeline: Pipeline | undefined;

  beforeAll(async () => {
    await client.connect();
    await client.query(`CREATE SCHEMA ${q(source)}`);
    for (const [table, columns] of Object.entries(options.sourceTables)) await client.query(`CREATE TABLE ${q(source)}.${table} (${columns})`);
    const config = await resolveConfig(
      {
        kafka: { brokers: ['127.0.0.1:9092'], topics: [...options.topics] },
        sinks: { pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: target } },
        routes: [],
        state: { connection_string: PG_URL, schema: state },
        handlers: options.handlers,
        log: { level: 'warn' },
      },
      { env: {} },
    );
    expect(Object.keys(config.views)).toEqual(options.views);
    pipeline = await buildPipeline(config, {
      logger: pino({ level: 'silent' }),
      events: new RouterEvents(),
      onFailure: (failure) => {
        failures.push(failure);
        return Promise.resolve(true);
      },
    });
  });

  afterAll(async () => {
    await pipeline?.close();
    for (const schema of [source, target, state]) await client.query(`DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`);
    await client.end();
  });

  return {
    client,
    source,
    target,
    failures,
    async process(records) {
      let committed: bigint | undefined;
      const outcome = await pipeline!.processor.process(records, { signal: new AbortController().signal, progress: (o) => (committed = o) });
      expect(outcome.halted).toBeUndefined();
      expect(outcome.commitOffset ?? committed).toBe(BigInt(Number(records.at(-1)!.offset) + 1));
    },
    async expectResultsEqualSql(truth, targetSql, sourceSql) {
      for (const view of Object.keys(truth)) {
        const expected = (await client.query(sourceSql(truth[view]!))).rows;
        const results = (await client.query(targetSql[view]!.replace('$T', `${q(target)}.${q(view)}`))).rows;
        expect(results, view).toEqual(expected);
        expect(expected.length, `${view} has results`).toBeGreaterThan(0);
      }
    },
  };
}
