import { get } from 'node:http';
import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig, type Config } from '../config/load.ts';
import { viewLag, viewReports, type ViewReport } from './views-command.ts';
import { errorMessage } from '../errors.ts';
import { statusReportSchema, type StatusReport } from '../metrics/status-report.ts';
import { isRequestError } from './request-error.ts';
import { oneOf, parseOptions } from './options.ts';
import { formatTable } from './table.ts';

export const DEFAULT_STATUS_URL = 'http://127.0.0.1:9464';

const statusOptions = z
  .object({
    url: z
      .string()
      .url()
      .refine((u) => u.startsWith('http://'), 'expected an http:// URL')
      .optional(),
    config: z.string().min(1).optional(),
    json: z.boolean().default(false),
    timeoutMs: z.number().int().positive().default(5_000),
  })
  .superRefine(oneOf(['url', 'config'], true));

export interface StatusIo {
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
}

/** Where the running router listens: --url, else the config's metrics block, else the default. */
function baseUrl(o: z.infer<typeof statusOptions>, config: Config | undefined): { url: string } | { problem: string } {
  if (o.url) return { url: o.url.replace(/\/+$/, '') };
  if (!o.config || !config) return { url: DEFAULT_STATUS_URL };
  const { metrics } = config;
  if (!metrics.enabled) return { problem: `metrics are disabled in ${o.config} (metrics.enabled: false): the router serves no /status` };
  if (metrics.port === 0) return { problem: `metrics.port is 0 in ${o.config} (any free port): pass --url with the port the router logged` };
  // A wildcard address is listened on, not connected to: ask over loopback.
  const host = metrics.host === '0.0.0.0' ? '127.0.0.1' : metrics.host === '::' ? '::1' : metrics.host;
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${metrics.port}` };
}

/** node:http rather than fetch: fetch refuses some ports outright ("bad port"), a config may use one. */
function httpGet(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export async function fetchStatus(url: string, timeoutMs: number): Promise<{ report: StatusReport } | { problem: string }> {
  let res: { status: number; body: string };
  try {
    res = await httpGet(`${url}/status`, timeoutMs);
  } catch (err) {
    return { problem: `cannot reach cdc-router at ${url}: ${errorMessage(err)} (is it running, with metrics enabled?)` };
  }
  const text = res.body;
  if (res.status !== 200) return { problem: `${url}/status answered HTTP ${res.status}: ${text.slice(0, 200).trim()}` };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { problem: `${url}/status did not answer JSON: is this a cdc-router?` };
  }
  const parsed = statusReportSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return { problem: `${url}/status is not a cdc-router status (${first ? `${first.path.join('.')}: ${first.message}` : 'unexpected shape'})` };
  }
  return { report: parsed.data };
}

const num = (v: number | null) => (v === null ? '-' : String(v));
const rate = (v: number) => (v === 0 ? '0' : v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));

function duration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatStatus(url: string, r: StatusReport): string {
  const parts: string[] = [];
  const state = r.stopping ? 'stopping' : r.ready ? 'ready' : `not ready (${r.not_ready.join('; ')})`;
  parts.push(`cdc-router at ${url}: group ${r.group}, ${state}, up ${duration(r.uptime_seconds)}\n`);

  parts.push('\n');
  if (r.partitions.length === 0) parts.push('no partitions assigned to this member\n');
  else {
    parts.push(
      formatTable(
        ['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG', 'IN FLIGHT', 'PAUSED'],
        r.partitions.map((p) => [p.topic, String(p.partition), num(p.committed), num(p.end), num(p.lag), String(p.in_flight), p.paused ? 'paused' : '']),
      ),
    );
    parts.push(`total lag ${num(r.total_lag)}${r.offsets_at ? ` (end offsets fetched ${r.offsets_at})` : ' (end offsets not fetched yet)'}\n`);
  }

  parts.push('\n');
  parts.push(
    formatTable(
      ['SINK', 'HEALTH', 'CIRCUIT', 'WRITTEN', 'WRITTEN/S', 'RETRIES', 'THROTTLED S', 'LAST WRITE', 'LAST ERROR'],
      r.sinks.map((s) => [
        s.name,
        s.health,
        s.circuit,
        String(s.written),
        rate(s.written_per_second),
        String(s.retries),
        s.throttled_seconds.toFixed(1),
        s.last_write_at ?? '-',
        s.last_error ? `${s.last_error_at ?? ''} ${s.last_error.replace(/\s+/g, ' ').slice(0, 120)}`.trim() : '-',
      ]),
    ),
  );

  const stages = Object.entries(r.dlq.by_stage).map(([stage, n]) => `${stage} ${n}`);
  parts.push(`\ndead-letter queue: ${r.dlq.entries} ${r.dlq.entries === 1 ? 'entry' : 'entries'} since start${stages.length ? ` (${stages.join(', ')})` : ''}\n`);
  const x = r.rates;
  parts.push(
    `rates over the last ${x.window_seconds} s, per second: consumed ${rate(x.consumed_per_second)}, written ${rate(x.written_per_second)}, ` +
      `filtered ${rate(x.filtered_per_second)}, skipped ${rate(x.skipped_per_second)}, dead-lettered ${rate(x.dead_lettered_per_second)}, ` +
      `failed ${rate(x.failed_per_second)}\n`,
  );
  return parts.join('');
}

/** Each view's watermark and lag (records of its input not applied yet), from the state store. */
export function formatViews(views: Readonly<Record<string, ViewReport>>): string {
  const rows = Object.entries(views).map(([name, r]) => [name, `${r.to.sink}:${r.to.table}`, r.watermark ?? '-', num(viewLag(r)), String(r.groups), String(r.outbox)]);
  return `\n${formatTable(['VIEW', 'OUTPUT', 'WATERMARK', 'LAG', 'GROUPS', 'OUTBOX'], rows)}`;
}

/** `cdc-router status`: 0 with the status printed; 1 when the instance cannot be reached or read; 2 bad options. */
export async function runStatus(raw: Record<string, unknown>, io: StatusIo): Promise<number> {
  let o: z.infer<typeof statusOptions>;
  try {
    o = parseOptions(statusOptions, raw);
  } catch (err) {
    if (!isRequestError(err)) throw err;
    io.err.write(`${err.message}\n`);
    return 2;
  }
  const config = o.config ? await loadConfig(o.config) : undefined;
  const where = baseUrl(o, config);
  if ('problem' in where) {
    io.err.write(`${where.problem}\n`);
    return 1;
  }
  const got = await fetchStatus(where.url, o.timeoutMs);
  if ('problem' in got) {
    io.err.write(`${got.problem}\n`);
    return 1;
  }
  // Views keep their watermark and offsets in the state store: read there, as `views list` does (the config says where).
  let views: Record<string, ViewReport> | undefined;
  let viewsProblem: string | undefined;
  if (config && Object.keys(config.views).length > 0) {
    views = await viewReports(config).catch((err: unknown) => {
      viewsProblem = `views: cannot read their state: ${errorMessage(err)}`;
      return undefined;
    });
  }
  if (o.json) io.out.write(`${JSON.stringify(views ? { ...got.report, views } : got.report, null, 2)}\n`);
  else io.out.write(formatStatus(where.url, got.report) + (views ? formatViews(views) : ''));
  if (viewsProblem) io.err.write(`${viewsProblem}\n`);
  return 0;
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('lag per partition, sink health, dead-letter count and rates of a running router (its /status)')
    .option('--url <url>', `the router's metrics address (default ${DEFAULT_STATUS_URL})`)
    .option('-c, --config <file>', "take the address from this config's metrics block")
    .option('--json', 'print the status as JSON')
    .action(async (raw: Record<string, unknown>) => {
      process.exitCode = await runStatus(raw, { out: process.stdout, err: process.stderr });
    });
}
