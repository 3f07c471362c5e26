import type { Logger } from 'pino';
import { SinkError } from '../../src/errors.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { defineSink, OK, once, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { classify } from './classify.ts';
import { createInfluxClient, quoteIdent, quoteLiteral, type InfluxClient, type WriteTarget } from './client.ts';
import { configSchema, layoutFor, type InfluxConfig, type TableLayout } from './config.ts';
import { encodeLine, nanosPer, PRECISION_PARAM, toPrecision } from './line-protocol.ts';
import { deletedPoint, measurementFor, rowToPoint } from './points.ts';

/** A step of a batch, in order: lines to write, or a statement (delete, drop series) between them. */
type Step = { readonly kind: 'lines'; readonly lines: string[]; readonly indices: number[] } | { readonly kind: 'statement'; readonly q: string; readonly index: number };

/**
 * Creates the database and retention policy when missing (once, and again after a write found the
 * database gone). CREATE DATABASE is a no-op for an existing one; the policy is looked up first,
 * since creating one that exists with other settings fails.
 */
function createSchemaEnsurer(client: InfluxClient, config: InfluxConfig): { ensure(): Promise<void>; forget(): void } {
  let done: Promise<void> | undefined;
  async function run(): Promise<void> {
    if (!config.create_database) return;
    await client.query(`CREATE DATABASE ${quoteIdent(config.database)}`);
    const rp = config.retention_policy;
    if (rp === undefined) return;
    const [result] = await client.query(`SHOW RETENTION POLICIES ON ${quoteIdent(config.database)}`);
    const names = (result?.series?.[0]?.values ?? []).map((v) => v[0]);
    if (names.includes(rp)) return;
    await client.query(
      `CREATE RETENTION POLICY ${quoteIdent(rp)} ON ${quoteIdent(config.database)} DURATION ${config.retention_duration} REPLICATION 1`,
    );
  }
  return {
    ensure: () => (done ??= run().catch((err: unknown) => {
      done = undefined;
      throw err;
    })),
    forget: () => {
      done = undefined;
    },
  };
}

function createInfluxdbSink(name: string, config: InfluxConfig, logger: Logger): Sink {
  const log = logger.child({ component: 'sink', sink: name, kind: 'influxdb' });
  const client = createInfluxClient({
    url: config.url,
    username: config.username,
    password: config.password,
    timeoutMs: config.request_timeout_ms,
  });
  const schema = createSchemaEnsurer(client, config);
  const target: WriteTarget = { database: config.database, retentionPolicy: config.retention_policy, precision: PRECISION_PARAM[config.precision] };
  const truncateTime = config.on_precision_loss === 'truncate';
  const layouts = new Map<string, TableLayout>();
  const layout = (tableId: string) => {
    let l = layouts.get(tableId);
    if (!l) layouts.set(tableId, (l = layoutFor(config, tableId)));
    return l;
  };

  const failed = (message: string, code: string, retriable: boolean, cause?: unknown) =>
    new SinkError(name, message, { code, retriable, cause });

  function lineOf(event: ChangeEvent): string {
    if (!event.after) throw failed(`op ${event.op} change of ${event.table.id} has no after image`, 'INFLUX_NO_ROW', false);
    const p = rowToPoint(event, event.after, layout(event.table.id));
    return encodeLine({ ...p, time: toPrecision(p.nanos, config.precision, truncateTime) });
  }

  function deleteStatement(event: ChangeEvent): string {
    const p = deletedPoint(event, layout(event.table.id));
    const where = p.tags.map(([k, v]) => `${quoteIdent(k)} = ${quoteLiteral(v)}`);
    // InfluxQL integer times are nanoseconds, whatever the write precision; the point was written
    // at the precision's truncation of this time.
    const time = toPrecision(p.nanos, config.precision, truncateTime) * nanosPer(config.precision);
    return `DELETE FROM ${quoteIdent(p.measurement)} WHERE ${where.join(' AND ')} AND time = ${time}`;
  }

  /** The batch as ordered steps; records that cannot be encoded get their result here. */
  function plan(batch: readonly ChangeEvent[], results: SinkResult[]): Step[] {
    const steps: Step[] = [];
    let lines: Extract<Step, { kind: 'lines' }> | undefined;
    const statement = (q: string, index: number) => {
      lines = undefined;
      steps.push({ kind: 'statement', q, index });
    };
    batch.forEach((event, i) => {
      try {
        if (event.op === 'd') {
          if (config.on_delete === 'delete_point') statement(deleteStatement(event), i);
          else results[i] = OK;
        } else if (event.op === 't') {
          if (config.truncate === 'drop_series') statement(`DROP SERIES FROM ${quoteIdent(measurementFor(layout(event.table.id).measurement, event.table))}`, i);
          else results[i] = OK;
        } else {
          const line = lineOf(event);
          if (!lines) steps.push((lines = { kind: 'lines', lines: [], indices: [] }));
          lines.lines.push(line);
          lines.indices.push(i);
        }
      } catch (err) {
        const f = classify(err);
        results[i] = { ok: false, error: err instanceof SinkError ? err : failed(`${event.table.id}: ${f.message}`, f.code, false, err) };
      }
    });
    return steps;
  }

  /** Any failure as the SinkError of the whole write; a refused single line is named in the message. */
  function batchFailure(err: unknown, lines?: readonly string[]): SinkError {
    const f = classify(err);
    if (f.code === 'INFLUX_DATABASE_NOT_FOUND') schema.forget();
    const line = lines?.length === 1 ? ` (line: ${lines[0]})` : lines ? ` (one of ${lines.length} lines)` : '';
    return failed(`${f.message}${line}`, f.code, f.retriable, err);
  }

  async function writeLines(lines: readonly string[]): Promise<void> {
    for (let at = 0; at < lines.length; at += config.max_points_per_request) {
      const chunk = lines.slice(at, at + config.max_points_per_request);
      try {
        await client.write(target, chunk.join('\n'));
      } catch (err) {
        throw batchFailure(err, chunk);
      }
    }
  }

  return {
    name,
    kind: 'influxdb',
    async start() {
      // A server down at startup is no reason to refuse to start: the first write ensures again, retried.
      await schema.ensure().catch((err: unknown) => {
        const f = classify(err);
        if (!f.retriable) throw failed(`cannot create database ${config.database}: ${f.message}`, f.code, false, err);
        log.warn({ err }, 'InfluxDB not reachable at start; the first write creates the database');
      });
    },
    async write(batch) {
      const results = new Array<SinkResult>(batch.length);
      const steps = plan(batch, results);
      if (steps.length === 0) return results;
      try {
        await schema.ensure();
      } catch (err) {
        throw batchFailure(err);
      }
      for (const step of steps) {
        if (step.kind === 'lines') {
          await writeLines(step.lines);
          for (const i of step.indices) results[i] = OK;
        } else {
          try {
            await client.query(step.q, config.database);
          } catch (err) {
            throw batchFailure(err);
          }
          results[step.index] = OK;
        }
      }
      return results;
    },
    close: once(async () => {}),
  };
}

export const influxdbSink = defineSink({
  kind: 'influxdb',
  configSchema,
  create: (name, config, { logger }) => createInfluxdbSink(name, config, logger),
});
