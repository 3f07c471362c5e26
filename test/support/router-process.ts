import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { waitUntil } from './kafka.ts';

/**
 * Router processes for the chaos tests: `node bin/cdc-router.js run --config F`, exactly as an
 * operator runs it, with its stderr (the pino log, one JSON object a line) kept in full, to
 * explain a failure and to read what the router did (joins, rebalances, kafkajs requests at trace).
 */

export const ROOT = resolve(import.meta.dirname, '../..');

/** Runs the real CLI, as an operator would; `env` replaces the environment it inherits. */
export async function cli(args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['bin/cdc-router.js', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: options.env });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** One line of the router's log: pino's fields (level, time, msg) plus whatever the line carries. */
export type LogLine = Record<string, unknown> & { readonly level: number; readonly time: number; readonly msg?: string };

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface RouterProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<Exit>;
  /** Undefined while it runs. */
  exit(): Exit | undefined;
  /** Everything it wrote to stderr so far. */
  log(): string;
  /** The complete JSON lines of its log so far (anything else, e.g. a stack trace, is skipped). */
  logLines(): LogLine[];
  /** Resolves with the first log line (from the start) that satisfies `match`; rejects if the process exits first. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs: number, what: string): Promise<LogLine>;
  /** kill -9, then wait for the exit. */
  kill9(): Promise<Exit>;
  /** SIGTERM (drain, commit, close), then wait for the exit; kill -9 after `timeoutMs`. */
  terminate(timeoutMs?: number): Promise<Exit>;
}

export interface StartOptions {
  /** For messages: which router this is ("router#3", "A"…). */
  readonly name: string;
  readonly env?: Readonly<Record<string, string>>;
}

/** Every router started by this module and not yet reaped: `killAll` ends them after a failed test. */
const running = new Set<RouterProcess>();

export function startRouter(configPath: string, options: StartOptions): RouterProcess {
  const child = spawn(process.execPath, [join(ROOT, 'bin/cdc-router.js'), 'run', '--config', configPath], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  if (child.pid === undefined) throw new Error(`${options.name}: spawn failed`);
  const chunks: Buffer[] = [];
  let text: string | undefined;
  let parsed: { upTo: number; lines: LogLine[] } = { upTo: 0, lines: [] };
  const waiters = new Set<() => void>();
  child.stderr?.on('data', (d: Buffer) => {
    chunks.push(d);
    text = undefined;
    for (const w of waiters) w();
  });
  let exitInfo: Exit | undefined;
  const exited = new Promise<Exit>((done) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      for (const w of waiters) w();
      done(exitInfo);
    });
  });

  const log = () => (text ??= Buffer.concat(chunks).toString('utf8'));
  /** Parses only what arrived since the last call: logs at trace reach tens of megabytes. */
  const logLines = () => {
    const all = log();
    const end = all.lastIndexOf('\n') + 1;
    if (end > parsed.upTo) {
      const lines = [...parsed.lines];
      for (const l of all.slice(parsed.upTo, end).split('\n')) {
        if (!l.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(l) as LogLine);
        } catch {
          // A line cut by kill -9 mid-write, or something that is not a log line.
        }
      }
      parsed = { upTo: end, lines };
    }
    return parsed.lines;
  };

  const router: RouterProcess = {
    name: options.name,
    pid: child.pid,
    child,
    exited,
    exit: () => exitInfo,
    log,
    logLines,
    waitForLog(match, timeoutMs, what) {
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(() => finish(new Error(`${options.name}: timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
        const finish = (err?: Error, line?: LogLine) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (err) reject(new Error(`${err.message}\n${tail(router)}`));
          else resolvePromise(line!);
        };
        const check = () => {
          const line = logLines().find(match);
          if (line) finish(undefined, line);
          else if (exitInfo) finish(new Error(`${options.name} exited (${describeExit(exitInfo)}) before ${what}`));
        };
        waiters.add(check);
        check();
      });
    },
    async kill9() {
      if (!exitInfo) child.kill('SIGKILL');
      const e = await exited;
      running.delete(router);
      return e;
    },
    async terminate(timeoutMs = 30_000) {
      if (!exitInfo) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const e = await exited;
      clearTimeout(timer);
      running.delete(router);
      return e;
    },
  };
  running.add(router);
  void exited.then(() => running.delete(router));
  return router;
}

/** kill -9 every router this module started that is still running (afterAll, after a failure). */
export async function killAll(): Promise<void> {
  await Promise.all([...running].map((r) => r.kill9()));
}

export function describeExit(e: Exit): string {
  return e.signal ? `signal ${e.signal}` : `code ${String(e.code)}`;
}

/** The end of a router's log, for a failure message. */
export function tail(router: RouterProcess, chars = 4000): string {
  const state = router.exit() ? `exited, ${describeExit(router.exit()!)}` : 'running';
  return `--- ${router.name} (pid ${router.pid}, ${state}) log tail:\n${router.log().slice(-chars)}`;
}

/** waitUntil, failing with the log tails of the given routers. */
export async function waitOrExplain<T>(
  fn: () => Promise<T> | T,
  timeoutMs: number,
  what: string,
  routers: () => readonly RouterProcess[],
): Promise<NonNullable<T>> {
  try {
    return await waitUntil(fn, timeoutMs, what);
  } catch (err) {
    throw new Error(`${String(err)}\n${routers().map((r) => tail(r)).join('\n')}`);
  }
}

/** Writes a router config (JSON) into `dir`; returns its path. */
export async function writeRouterConfig(dir: string, name: string, document: unknown): Promise<string> {
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify(document, null, 2));
  return path;
}

/**
 * The seed of a chaos test: CDC_CHAOS_SEED when set (to reproduce a failure), else the test's fixed
 * default. Printed by the caller, so that a failing run says how to repeat it.
 */
export function chaosSeed(fallback: number): number {
  const fromEnv = Number(process.env['CDC_CHAOS_SEED']);
  return Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : fallback;
}

export { seededRandom, type Random } from './random.ts';

/** Log lines of the consumer's "joined group", with the assignment they carry. */
export function joins(router: RouterProcess): { line: LogLine; assignment: Record<string, number[]> }[] {
  return router
    .logLines()
    .filter((l) => l.msg === 'joined group')
    .map((line) => ({ line, assignment: (line['assignment'] ?? {}) as Record<string, number[]> }));
}
