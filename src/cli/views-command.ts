import type { Command } from 'commander';
import pg from 'pg';
import { z } from 'zod';
import { loadConfig, type Config } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { assertGroupIdle } from '../replay/group-offsets.ts';
import { connectGroupAdmin } from '../consume/group-admin.ts';
import { OffsetsRequestError } from '../consume/group-errors.ts';
import { isRequestError } from './request-error.ts';
import { replayExitCode, runReplay } from '../replay/replay.ts';
import { formatReplaySummary } from './report.ts';
import { StateStore, type ViewSummary } from '../view/state-store.ts';
import { viewResultPaths, type ResultPath } from '../view/build-views.ts';
import { planView } from '../view/view-plan.ts';
import { parseOptions } from './options.ts';

const listOptions = z.object({ config: z.string().min(1), json: z.boolean().default(false) });
const resetOptions = z.object({ config: z.string().min(1), topic: z.string().min(1).optional() });

async function withState<T>(config: Config, fn: (client: pg.PoolClient, store: StateStore) => Promise<T>): Promise<T> {
  if (!config.state) throw new OffsetsRequestError('the config has no state connection (state.connection_string)', 'NO_STATE');
  const pool = new pg.Pool({ connectionString: config.state.connection_string, max: 1 });
  const client = await pool.connect();
  try {
    const store = new StateStore(config.state.schema);
    await store.ensureSchema(client);
    return await fn(client, store);
  } finally {
    client.release();
    await pool.end();
  }
}

export interface ViewReport extends Omit<ViewSummary, 'offsets'> {
  readonly input: Record<string, string>;
  readonly to: { readonly sink: string; readonly table: string };
  /** How its results (and late changes) leave: written in the state transaction, or through the outbox. */
  readonly results: { readonly output: ResultPath; readonly late?: ResultPath };
  readonly watermark: string | null;
  readonly offsets: readonly (ViewSummary['offsets'][number] & { readonly lag: number | null })[];
}

/** End offsets of the topics' partitions, by `topic \0 partition`. */
async function endOffsets(config: Config, topics: readonly string[]): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  if (topics.length === 0) return out;
  const admin = await connectGroupAdmin(config.kafka, createLogger({ level: 'error' }));
  try {
    for (const topic of new Set(topics)) for (const b of await admin.bounds(topic)) out.set(`${topic}\u0000${b.partition}`, b.high);
  } finally {
    await admin.close();
  }
  return out;
}

/** The input topic of a view: given, or the one configured topic named `<prefix>.<schema>.<table>`. */
function inputTopic(config: Config, table: string, given: string | undefined): string {
  if (given) return given;
  const matches = (config.kafka.topics ?? []).filter((t) => t.endsWith(`.${table}`));
  if (matches.length === 1) return matches[0]!;
  throw new OffsetsRequestError(`cannot tell the input topic of table ${table} from kafka.topics: give --topic`, 'NO_TOPIC');
}

/** Each view of the config: its state summary, watermark, and lag per input partition (`views list`, `status`). */
export async function viewReports(config: Config): Promise<Record<string, ViewReport>> {
  const summaries = await withState(config, async (client, store) => {
    const out = new Map<string, ViewSummary>();
    for (const name of Object.keys(config.views)) out.set(name, await store.summary(client, name));
    return out;
  });
  const ends = await endOffsets(config, [...summaries.values()].flatMap((x) => x.offsets.map((y) => y.topic)));
  const paths = viewResultPaths(config, createLogger({ level: 'error' }));
  const report: Record<string, ViewReport> = {};
  for (const [name, v] of Object.entries(config.views)) {
    const summary = summaries.get(name)!;
    // Lag: records of the input partitions the view has not applied yet (null when the broker did not say).
    const offsets = summary.offsets.map((x) => {
      const end = ends.get(`${x.topic}\u0000${x.partition}`);
      return { ...x, lag: end === undefined ? null : Number(end > BigInt(x.next) ? end - BigInt(x.next) : 0n) };
    });
    const watermark = summary.watermarkMs === null ? null : new Date(summary.watermarkMs).toISOString();
    report[name] = { input: { [v.mode]: v.input }, to: v.output, results: paths[name]!, ...summary, offsets, watermark };
  }
  return report;
}

/** A view's lag: the sum over its input partitions; null when the broker did not say for one of them. */
export function viewLag(r: ViewReport): number | null {
  let sum = 0;
  for (const o of r.offsets) {
    if (o.lag === null) return null;
    sum += o.lag;
  }
  return sum;
}

export function registerViewsCommand(program: Command): void {
  const views = program.command('views').description("inspect or rebuild the config's views");

  views
    .command('list')
    .description('each view: its input, how its results leave (state transaction or outbox), rows and groups held, results waiting in the outbox, input offsets applied')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--json', 'one JSON object on stdout')
    .action(async (raw: Record<string, unknown>) => {
      const o = parseOptions(listOptions, raw);
      const config = await loadConfig(o.config);
      const report = await viewReports(config);
      if (o.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      for (const [name, r] of Object.entries(report)) {
        const offsets = r.offsets.map((x) => `${x.topic}/${x.partition}@${x.next} (lag ${x.lag ?? '?'})`).join(' ') || 'none applied yet';
        const watermark = r.watermark === null ? '' : `  watermark ${r.watermark}`;
        const late = r.results.late ? `, late via ${r.results.late}` : '';
        process.stdout.write(`${name} -> ${r.to.sink}:${r.to.table} (via ${r.results.output}${late})  rows ${r.rows}  groups ${r.groups}  outbox ${r.outbox}${watermark}  offsets ${offsets}\n`);
      }
    });

  views
    .command('reset')
    .description("delete a view's results, drop its state and rebuild it from the beginning of its input topic (the group must be stopped)")
    .argument('<name>', 'view name')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--topic <topic>', 'the input topic (default: the one of kafka.topics named after the input table)')
    .action(async (name: string, raw: Record<string, unknown>) => {
      try {
        const o = parseOptions(resetOptions, raw);
        const config = await loadConfig(o.config);
        const view = config.views[name];
        if (!view) throw new OffsetsRequestError(`no view named ${name} (views: ${Object.keys(config.views).join(', ') || 'none'})`, 'NO_VIEW');
        const logger = createLogger({ level: config.log.level });
        // A merged view reads several tables: each input topic is replayed (--topic names the topic of a single-input view).
        const tables = [...new Set([view.input, ...(view.inputs ?? [])])];
        const topics = tables.map((t) => inputTopic(config, t, tables.length === 1 ? o.topic : undefined));
        // A running member would apply new changes before the rebuild reaches them, and the rebuild would then skip them.
        const admin = await connectGroupAdmin(config.kafka, logger);
        try {
          await assertGroupIdle(admin, config.kafka.group_id);
        } finally {
          await admin.close();
        }
        const deleted = await withState(config, async (client, store) => {
          await client.query('BEGIN');
          try {
            const n = await store.resetView(client, name, planView(name, view).keyColumns);
            await client.query('COMMIT');
            return n;
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw err;
          }
        });
        process.stdout.write(`${name}: state dropped, ${deleted} result(s) to delete; rebuilding from ${topics.join(', ')}\n`);
        // Only this view, no routes: the replay rebuilds it and delivers the deletes first (its outbox is oldest first).
        const only: Config = { ...config, routes: [], views: { [name]: view } };
        let exitCode = 0;
        for (const topic of topics) {
          const summary = await runReplay(only, { topic, from: { kind: 'timestamp', ms: 0 } }, { logger });
          process.stdout.write(formatReplaySummary(summary));
          exitCode = Math.max(exitCode, replayExitCode(summary));
        }
        process.exitCode = exitCode;
        logger.flush();
      } catch (err) {
        if (!isRequestError(err)) throw err;
        console.error(err.message);
        process.exitCode = 2;
      }
    });
}
