import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig, type Config } from '../config/load.ts';
import { CdcError, errorMessage } from '../errors.ts';
import { createLogger } from '../log.ts';
import type { RecordCoordinates } from '../errors.ts';
import type { ChangeEvent } from '../model/change-event.ts';
import { eventJsonReplacer } from '../model/serialize.ts';
import { isRequestError } from './request-error.ts';
import { parseOptions } from './options.ts';
import { createTestPipeline, type TestPipeline } from '../testing/harness.ts';
import type { MemoryWrite } from '../testing/memory-sink.ts';
import { readInThrowawayGroup, type ThrowawayReadResult } from './throwaway-read.ts';

/*
 * `cdc-router run --dry-run`: the live topics through the config's real decoder, routes, transforms
 * and handlers (the test harness, the pipeline's own prepareRecord) into memory sinks, read in a
 * throwaway consumer group; prints what each sink would be asked to write and what would be
 * dead-lettered. Nothing is committed and nothing reaches a sink or the dead-letter queue.
 */

const DURATION = /^(\d+)(ms|s|m|h)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

const durationOption = z
  .string()
  .regex(DURATION, 'expected a duration such as 500ms, 30s, 5m or 1h')
  .transform((s) => {
    const [, n, unit] = DURATION.exec(s)!;
    return Number(n) * UNIT_MS[(unit ?? 'ms') as keyof typeof UNIT_MS];
  });

const dryRunOptions = z.object({
  config: z.string().min(1),
  maxRecords: z
    .string()
    .regex(/^\d+$/, 'expected a number of records')
    .transform((s) => Number(s))
    .default('100'),
  duration: durationOption.default('60s'),
  from: z.enum(['beginning', 'end']).default('beginning'),
  follow: z.boolean().default(false),
  json: z.boolean().default(false),
});

export type DryRunOptions = z.infer<typeof dryRunOptions>;

/** One entry of the dry run's output, as `--json` prints it (one JSON object per line). */
export type DryRunEntry =
  | ({ readonly type: 'write'; readonly sink: string } & MemoryWrite & RecordCoordinates)
  | { readonly type: 'dead_letter'; readonly stage: string; readonly code: string; readonly message: string; readonly table: string | undefined } & RecordCoordinates
  | { readonly type: 'skipped'; readonly reason: string } & RecordCoordinates;

const coordinates = (event: ChangeEvent): RecordCoordinates => ({
  topic: event.kafka.topic,
  partition: event.kafka.partition,
  offset: event.kafka.offset,
});

const json = (v: unknown) => JSON.stringify(v, eventJsonReplacer);
const where = (e: RecordCoordinates) => `${e.topic}/${e.partition}@${e.offset}`;

/** Runs one fetched batch through the test pipeline: its writes per sink (in sink order), dead letters, skips. */
async function entriesOf(pipeline: TestPipeline, records: Parameters<TestPipeline['run']>[0]): Promise<DryRunEntry[]> {
  const run = await pipeline.run(records);
  const at = (index: number): RecordCoordinates => {
    const r = records[index]!;
    return { topic: r.topic, partition: r.partition ?? 0, offset: String(r.offset) };
  };
  const entries: DryRunEntry[] = [];
  for (const [name, sink] of pipeline.sinks) {
    // The memory sink records one write per event it received, in the same order.
    sink.writes.forEach((write, i) => entries.push({ type: 'write', sink: name, ...write, ...coordinates(sink.events[i]!) }));
  }
  for (const d of run.deadLetters) {
    const coords = at(d.index);
    // The coordinates are fields of their own; the message need not repeat them.
    const message = d.message.startsWith(`${where(coords)}: `) ? d.message.slice(where(coords).length + 2) : d.message;
    entries.push({ type: 'dead_letter', stage: d.stage, code: d.code, message, table: d.table, ...coords });
  }
  for (const s of run.skipped) entries.push({ type: 'skipped', reason: s.reason, ...at(s.index) });
  return entries;
}


function writeLine(w: MemoryWrite & RecordCoordinates): string {
  switch (w.op) {
    case 'upsert':
      return `  upsert ${w.table} key ${json(w.key)} row ${json(w.row)}  (${where(w)})`;
    case 'delete':
      return `  delete ${w.table} key ${json(w.key)}  (${where(w)})`;
    case 'truncate':
      return `  truncate ${w.table}  (${where(w)})`;
  }
}

/** The human-readable report: writes grouped by sink (in config order), then dead letters and skips. */
export function formatDryRun(
  config: { readonly sinks: readonly { readonly name: string }[]; readonly dlq: { readonly kind: string } },
  entries: readonly DryRunEntry[],
): string {
  const out: string[] = [];
  for (const spec of config.sinks) {
    const writes = entries.filter((e): e is Extract<DryRunEntry, { type: 'write' }> => e.type === 'write' && e.sink === spec.name);
    const count = (op: MemoryWrite['op']) => writes.filter((w) => w.op === op).length;
    out.push(`sink ${spec.name}: ${count('upsert')} upsert(s), ${count('delete')} delete(s), ${count('truncate')} truncate(s)`);
    for (const w of writes) out.push(writeLine(w));
  }
  const dead = entries.filter((e): e is Extract<DryRunEntry, { type: 'dead_letter' }> => e.type === 'dead_letter');
  const target = config.dlq.kind === 'none' ? 'no dead-letter queue configured: the service would halt the partition at the first' : `to the ${config.dlq.kind} dead-letter queue`;
  out.push(`dead letters: ${dead.length}${dead.length > 0 ? ` (${target})` : ''}`);
  for (const d of dead) out.push(`  ${d.code} (${d.stage})${d.table ? ` ${d.table}` : ''}: ${d.message}  (${where(d)})`);
  const skipped = entries.filter((e) => e.type === 'skipped');
  const reasons = new Map<string, number>();
  for (const s of skipped) reasons.set(s.reason, (reasons.get(s.reason) ?? 0) + 1);
  out.push(`skipped: ${skipped.length}${reasons.size > 0 ? ` (${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')})` : ''}`);
  return `${out.join('\n')}\n`;
}

function stopText(result: ThrowawayReadResult): string {
  const why = { end: 'read to the end offsets of the start', 'max-records': '--max-records reached', duration: '--duration elapsed', signal: 'interrupted' }[result.stoppedBy];
  return `dry run: ${result.records} record(s) from ${result.topics.join(', ')} (${why}); throwaway group ${result.group} deleted, nothing committed, nothing written\n`;
}

export interface DryRunIo {
  readonly out: { write(text: string): unknown };
  readonly err: { write(text: string): unknown };
  readonly signal?: AbortSignal;
}

/** The dry run itself: 0 when it read what it was asked, 1 when a record would be dead-lettered. */
export async function runDryRun(config: Config, options: DryRunOptions, io: DryRunIo): Promise<number> {
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  const pipeline = await createTestPipeline(config);
  if (Object.keys(config.views).length > 0) io.err.write('dry run: views are not run (their state lives in PostgreSQL); their tables are read as routes give them\n');
  const entries: DryRunEntry[] = [];
  let deadLetters = 0;
  try {
    const result = await readInThrowawayGroup(
      config,
      {
        label: 'dry-run',
        start: options.from,
        maxRecords: options.maxRecords,
        durationMs: options.duration,
        stopAtEnd: !options.follow,
        logger,
        signal: io.signal,
      },
      async (records) => {
        const batch = await entriesOf(pipeline, records);
        deadLetters += batch.filter((e) => e.type === 'dead_letter').length;
        // --json streams, one line per entry; the report groups by sink, so it waits for the end.
        if (options.json) for (const e of batch) io.out.write(`${json(e)}\n`);
        else entries.push(...batch);
      },
    );
    if (!options.json) io.out.write(formatDryRun(config, entries));
    io.err.write(stopText(result));
    return deadLetters > 0 ? 1 : 0;
  } finally {
    logger.flush();
  }
}

/** `run`'s dry-run options (added to the `run` command, which hands over to `runDryRunCommand`). */
export function addDryRunOptions(command: Command): Command {
  return command
    .option('--dry-run', 'consume in a throwaway group and print what each sink would write; commits and writes nothing')
    .option('--max-records <n>', 'dry run: stop after this many records', '100')
    .option('--duration <time>', 'dry run: stop after this long (500ms, 30s, 5m)', '60s')
    .option('--from <where>', 'dry run: start at the beginning or the end of each partition (beginning | end)', 'beginning')
    .option('--follow', 'dry run: do not stop at the end offsets the topics had at the start')
    .option('--json', 'dry run: one JSON object per write, dead letter and skipped record');
}

export async function runDryRunCommand(raw: Record<string, unknown>): Promise<void> {
  try {
    const options = parseOptions(dryRunOptions, raw);
    const config = await loadConfig(options.config);
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      process.exitCode = await runDryRun(config, options, { out: process.stdout, err: process.stderr, signal: abort.signal });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } catch (err) {
    // What cannot be done as asked (bad options, a missing topic, a registry that does not answer): the message alone.
    if (!(err instanceof CdcError)) throw err;
    console.error(isRequestError(err) ? err.message : `dry run: ${errorMessage(err)}`);
    process.exitCode = 2;
  }
}
