import { isUtf8 } from 'node:buffer';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { loadConfig, type Config } from '../config/load.ts';
import { createDeadLetterQueue } from '../dlq/create-dead-letter-queue.ts';
import {
  DEAD_LETTER_STATUSES,
  type DeadLetterEntry,
  type DeadLetterFilter,
  type DeadLetterQueue,
  type DeadLetterStatus,
} from '../dlq/dead-letter-queue.ts';
import { connectStage } from '../dlq/kafka-headers.ts';
import { createReplayer, type ReplayResult } from '../dlq/replay.ts';
import { CdcError, ConfigError, errorMessage } from '../errors.ts';
import { createLogger } from '../log.ts';
import { formatTable } from './table.ts';

/**
 * `cdc-router dlq list|show|replay|discard`: the operator's view of the dead-letter queue the config
 * names. Tables for people, `--json` for scripts. Exit codes: 0 ok, 1 some replays failed, 2 usage,
 * config, or the queue cannot be read.
 */

export interface DlqIo {
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
}

/** Command-line flags as commander hands them over (strings, unvalidated). */
export interface DlqFlags {
  readonly config: string;
  readonly json?: boolean;
  readonly table?: string;
  /** list, discard: filter by the sink that failed; replay: the sink to write to. */
  readonly sink?: string;
  /** replay: filter by the sink that failed. */
  readonly failedSink?: string;
  readonly stage?: string;
  readonly since?: string;
  readonly limit?: string;
  readonly status?: string;
  readonly all?: boolean;
  readonly dryRun?: boolean;
}

class UsageError extends Error {}

const STAGES = ['decode', 'route', 'transform', 'view', 'sink'];

function parseFilter(flags: DlqFlags, sinkFilter: string | undefined): DeadLetterFilter {
  const status = flags.status ?? 'open';
  if (status !== 'all' && !(DEAD_LETTER_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status must be one of ${[...DEAD_LETTER_STATUSES, 'all'].join(', ')}, not "${status}"`);
  }
  if (flags.stage !== undefined && !STAGES.includes(flags.stage)) {
    throw new UsageError(`--stage must be one of ${STAGES.join(', ')}, not "${flags.stage}"`);
  }
  let since: number | undefined;
  if (flags.since !== undefined) {
    since = Date.parse(flags.since);
    if (Number.isNaN(since)) throw new UsageError(`--since must be an ISO-8601 time (e.g. 2025-01-31T12:00:00Z), not "${flags.since}"`);
  }
  let limit: number | undefined;
  if (flags.limit !== undefined) {
    limit = Number(flags.limit);
    if (!/^\d+$/.test(flags.limit) || limit < 1) throw new UsageError(`--limit must be a positive integer, not "${flags.limit}"`);
  }
  return { table: flags.table, sink: sinkFilter, stage: flags.stage, since, limit, status: status as DeadLetterStatus | 'all' };
}

/** An id, or a filter that selects something on purpose: never everything by accident. */
function requireSelection(id: string | undefined, flags: DlqFlags, filterSink: string | undefined): void {
  const filtered = [flags.table, filterSink, flags.stage, flags.since, flags.limit].some((v) => v !== undefined) || flags.status !== undefined;
  if (id !== undefined && (filtered || flags.all)) throw new UsageError('give an entry id or filter options, not both');
  if (id === undefined && !filtered && !flags.all) {
    throw new UsageError('give an entry id, or filter options (--table, --stage, --since, --limit, --status, a sink filter), or --all');
  }
}

interface Session {
  readonly config: Config;
  readonly dlq: DeadLetterQueue;
  readonly logger: Logger;
}

/** Loads the config, opens its dead-letter queue, runs fn, closes; maps failures to exit codes. */
async function withDlq(flags: DlqFlags, io: DlqIo, fn: (s: Session) => Promise<number>): Promise<number> {
  let dlq: DeadLetterQueue | undefined;
  try {
    const config = await loadConfig(flags.config);
    // Logs go to stderr; by default only problems, so that stdout stays the command's output.
    const logger = createLogger({ level: process.env['LOG_LEVEL'] ?? 'warn' });
    dlq = createDeadLetterQueue(config, logger);
    if (!dlq) throw new UsageError(`${flags.config} configures no dead-letter queue (dlq.kind is none)`);
    await dlq.start();
    return await fn({ config, dlq, logger });
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) io.err.write(`${err.message}\n`);
    else io.err.write(`error: ${err instanceof CdcError ? err.message : errorMessage(err)}\n`);
    return 2;
  } finally {
    await dlq?.close();
  }
}

async function selectEntries(dlq: DeadLetterQueue, id: string | undefined, filter: DeadLetterFilter): Promise<DeadLetterEntry[]> {
  if (id === undefined) return dlq.list(filter);
  const entry = await dlq.get(id);
  if (!entry) throw new UsageError(`no entry ${id} in ${dlq.target}`);
  return [entry];
}

type BytesView = { readonly utf8: string } | { readonly base64: string } | null;

/** Text when the bytes are UTF-8 without control characters (other than tab and newlines), else base64. */
export function bytesView(b: Buffer | null | undefined): BytesView {
  if (!b) return null;
  if (isUtf8(b)) {
    const text = b.toString('utf8');
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text)) return { utf8: text };
  }
  return { base64: b.toString('base64') };
}

const iso = (ms: number | undefined): string | null => (ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString());

export function entryJson(e: DeadLetterEntry): Record<string, unknown> {
  const c = e.context;
  return {
    id: e.id,
    status: e.status,
    stored_at: iso(e.storedAt),
    status_at: iso(e.statusAt),
    topic: c.topic,
    partition: c.partition,
    offset: c.offset,
    timestamp: iso(c.timestamp),
    stage: c.stage,
    connect_stage: connectStage(c.stage, c.errorCode, c.errorMessage),
    sink: c.sink ?? null,
    table: c.table ?? null,
    error: { class: c.errorClass, code: c.errorCode, message: c.errorMessage, stack: c.errorStack ?? null },
    attempts: c.attempts,
    first_failure_at: iso(c.firstFailureAt),
    last_failure_at: iso(c.lastFailureAt),
    key: bytesView(e.key),
    value: bytesView(e.value),
    headers: Object.fromEntries(Object.entries(e.headers).map(([k, v]) => [k, bytesView(v)])),
  };
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function describeBytes(b: Buffer | null | undefined): string {
  const v = bytesView(b);
  if (v === null) return '(null)';
  return 'utf8' in v ? v.utf8 : `(base64) ${v.base64}`;
}

function showText(e: DeadLetterEntry): string {
  const c = e.context;
  const rows: [string, string][] = [
    ['status', e.statusAt === undefined ? e.status : `${e.status} (${iso(e.statusAt)})`],
    ['source', `${c.topic}/${c.partition}@${c.offset}  (record time ${iso(c.timestamp) ?? '-'})`],
    ['stage', `${c.stage}  (Connect: ${connectStage(c.stage, c.errorCode, c.errorMessage)})`],
    ['table', c.table ?? '-'],
    ['sink', c.sink ?? '-'],
    ['error', `${c.errorClass} ${c.errorCode}`],
    ['message', c.errorMessage],
    ['attempts', String(c.attempts)],
    ['first failure', iso(c.firstFailureAt) ?? '-'],
    ['last failure', iso(c.lastFailureAt) ?? '-'],
    ['stored', iso(e.storedAt) ?? '-'],
    ['key', describeBytes(e.key)],
    ['value', describeBytes(e.value)],
  ];
  for (const [name, v] of Object.entries(e.headers)) rows.push([`header ${name}`, describeBytes(v)]);
  const width = Math.max(...rows.map(([k]) => k.length));
  const body = rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
  const stack = c.errorStack ? `\n  stack:\n${c.errorStack.replace(/^/gm, '    ')}` : '';
  return `entry ${e.id}\n${body}${stack}\n`;
}

function write(io: DlqIo, text: string): void {
  io.out.write(text);
}

export async function runDlqList(flags: DlqFlags, io: DlqIo): Promise<number> {
  let filter: DeadLetterFilter;
  try {
    filter = parseFilter(flags, flags.sink);
  } catch (err) {
    io.err.write(`${errorMessage(err)}\n`);
    return 2;
  }
  return withDlq(flags, io, async ({ dlq }) => {
    const entries = await dlq.list(filter);
    if (flags.json) {
      write(io, `${JSON.stringify(entries.map(entryJson), null, 2)}\n`);
      return 0;
    }
    const rows = entries.map((e) => {
      const c = e.context;
      return [
        e.id,
        e.status,
        c.stage,
        c.table ?? '-',
        c.sink ?? '-',
        `${c.topic}/${c.partition}@${c.offset}`,
        iso(c.lastFailureAt) ?? '-',
        c.errorCode,
        oneLine(c.errorMessage, 100),
      ];
    });
    if (rows.length > 0) write(io, formatTable(['ID', 'STATUS', 'STAGE', 'TABLE', 'SINK', 'SOURCE', 'LAST FAILURE', 'CODE', 'MESSAGE'], rows));
    write(io, `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'} in ${dlq.target}\n`);
    return 0;
  });
}

export async function runDlqShow(id: string, flags: DlqFlags, io: DlqIo): Promise<number> {
  return withDlq(flags, io, async ({ dlq }) => {
    const [entry] = await selectEntries(dlq, id, {});
    if (!entry) return 2;
    write(io, flags.json ? `${JSON.stringify(entryJson(entry), null, 2)}\n` : showText(entry));
    return 0;
  });
}

function resultJson(r: ReplayResult): Record<string, unknown> {
  return {
    id: r.id,
    outcome: r.outcome,
    dry_run: r.dryRun,
    sinks: r.sinks,
    table: r.table ?? null,
    op: r.op ?? null,
    position: r.position ?? null,
    reason: r.reason ?? null,
    code: r.code ?? null,
  };
}

export async function runDlqReplay(id: string | undefined, flags: DlqFlags, io: DlqIo): Promise<number> {
  let filter: DeadLetterFilter;
  try {
    filter = parseFilter(flags, flags.failedSink);
    requireSelection(id, flags, flags.failedSink);
  } catch (err) {
    io.err.write(`${errorMessage(err)}\n`);
    return 2;
  }
  return withDlq(flags, io, async ({ config, dlq, logger }) => {
    if (flags.sink !== undefined && !config.sinks.some((s) => s.name === flags.sink)) {
      throw new UsageError(`--sink ${flags.sink}: no such sink in ${flags.config} (known: ${config.sinks.map((s) => s.name).join(', ')})`);
    }
    const entries = await selectEntries(dlq, id, filter);
    const replayer = createReplayer(config, { dlq, logger });
    const results: ReplayResult[] = [];
    try {
      for (const entry of entries) results.push(await replayer.replay(entry, { sink: flags.sink, dryRun: flags.dryRun }));
    } finally {
      await replayer.close();
    }
    const failed = results.filter((r) => r.outcome === 'failed').length;
    if (flags.json) {
      write(io, `${JSON.stringify(results.map(resultJson), null, 2)}\n`);
    } else {
      const verb = (r: ReplayResult) =>
        r.outcome === 'failed' ? 'failed' : flags.dryRun ? `would be ${r.outcome}` : r.outcome;
      const rows = results.map((r) => [
        r.id,
        verb(r),
        r.table ?? '-',
        r.op ?? '-',
        r.sinks.length > 0 ? r.sinks.join(',') : '-',
        oneLine(r.outcome === 'failed' ? `${r.code ?? ''} ${r.reason ?? ''}` : (r.reason ?? ''), 120) || '-',
      ]);
      if (rows.length > 0) write(io, formatTable(['ID', 'OUTCOME', 'TABLE', 'OP', 'SINKS', 'DETAIL'], rows));
      const done = results.length - failed;
      write(io, `${flags.dryRun ? 'dry run: ' : ''}${done} ${flags.dryRun ? 'would replay' : 'replayed'}, ${failed} failed\n`);
    }
    return failed > 0 ? 1 : 0;
  });
}

export async function runDlqDiscard(id: string | undefined, flags: DlqFlags, io: DlqIo): Promise<number> {
  let filter: DeadLetterFilter;
  try {
    filter = parseFilter(flags, flags.sink);
    requireSelection(id, flags, flags.sink);
  } catch (err) {
    io.err.write(`${errorMessage(err)}\n`);
    return 2;
  }
  return withDlq(flags, io, async ({ dlq }) => {
    const entries = await selectEntries(dlq, id, filter);
    for (const e of entries) await dlq.mark(e.id, 'discarded');
    if (flags.json) write(io, `${JSON.stringify(entries.map((e) => ({ id: e.id, status: 'discarded' })), null, 2)}\n`);
    else write(io, `${entries.map((e) => `${e.id}  discarded\n`).join('')}${entries.length} discarded\n`);
    return 0;
  });
}

type Runner = (io: DlqIo) => Promise<number>;

async function run(runner: Runner): Promise<void> {
  process.exitCode = await runner({ out: process.stdout, err: process.stderr });
}

function filterOptions(cmd: Command, sinkFlag: string): Command {
  return cmd
    .option('--table <table>', 'only entries of this table id (e.g. public.customers)')
    .option(sinkFlag, 'only entries a sink of this name failed')
    .option('--stage <stage>', 'only entries that failed at this stage: decode, route, transform, view, sink')
    .option('--since <time>', 'only entries whose last failure is at or after this ISO-8601 time')
    .option('--limit <n>', 'at most n entries, oldest first')
    .option('--status <status>', 'open, replayed, discarded or all (default open)');
}

/** Adds `dlq list|show|replay|discard` to the program. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('inspect, replay and discard dead-lettered records');
  // Usage errors exit 2 (commander's own default is 1, which here means "some replays failed").
  dlq.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

  filterOptions(dlq.command('list').description('list entries (default: open ones)'), '--sink <sink>')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--json', 'JSON for scripts')
    .action((flags: DlqFlags) => run((io) => runDlqList(flags, io)));

  dlq
    .command('show')
    .description('one entry: context, error, key and value (text when UTF-8, else base64)')
    .argument('<id>', 'entry id')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--json', 'JSON for scripts')
    .action((id: string, flags: DlqFlags) => run((io) => runDlqShow(id, flags, io)));

  filterOptions(
    dlq
      .command('replay')
      .description("run entries through today's decoder, routes and transforms; write them to the sinks that failed them"),
    '--failed-sink <sink>',
  )
    .argument('[id]', 'entry id (or select with the filter options, or --all)')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--sink <sink>', 'write to this sink instead')
    .option('--all', 'every open entry')
    .option('--dry-run', 'say what would be written; write and mark nothing')
    .option('--json', 'JSON for scripts')
    .action((id: string | undefined, flags: DlqFlags) => run((io) => runDlqReplay(id, flags, io)));

  filterOptions(dlq.command('discard').description('mark entries discarded (kept, hidden from the default list)'), '--sink <sink>')
    .argument('[id]', 'entry id (or select with the filter options, or --all)')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--all', 'every open entry')
    .option('--json', 'JSON for scripts')
    .action((id: string | undefined, flags: DlqFlags) => run((io) => runDlqDiscard(id, flags, io)));
}
