import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './router-process.ts';

/** Router processes of an end-to-end test, with their interleaved log, killed hard on cleanup. */
export interface RouterChildren {
  /** `cdc-router run --config F`; its output joins the log, each line prefixed with `[tag] ` when given. */
  start(configPath: string, tag?: string): ChildProcess;
  /** SIGKILL, and wait until it exited. */
  killHard(child: ChildProcess): Promise<void>;
  killAll(): Promise<void>;
  /** Polls fn; gives up early, with the log's tail, once a record failed for good (an error naming its stage). */
  waitFor<T>(fn: () => Promise<T>, what: string, timeoutMs?: number): Promise<NonNullable<T>>;
  /** A line of the test's own in the log (kills, phases). */
  note(line: string): void;
  log(): string;
  resetLog(): void;
}

export function routerChildren(options: { keepChars?: number; tailChars?: number; pollMs?: number; timeoutMs?: number } = {}): RouterChildren {
  const keepChars = options.keepChars ?? 30_000;
  const children = new Set<ChildProcess>();
  let log = '';
  const killHard = async (child: ChildProcess) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  return {
    start(configPath, tag) {
      const child = spawn(process.execPath, [join(ROOT, 'bin/cdc-router.js'), 'run', '--config', configPath], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const keep = (d: Buffer) => {
        const text = tag === undefined ? d.toString() : d.toString().replace(/^/gm, `[${tag}] `);
        log = (log + text).slice(-keepChars);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    killHard,
    async killAll() {
      for (const c of children) await killHard(c);
    },
    async waitFor(fn, what, timeoutMs = options.timeoutMs ?? 90_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const failed = /"level":50,[^\n]*"stage":"/.test(log);
        if (failed || Date.now() > deadline) {
          const tail = log.slice(-(options.tailChars ?? 6000));
          throw new Error(`${failed ? 'a record failed for good' : 'timed out'} waiting for ${what}\nrouter log tail:\n${tail}`);
        }
        const v = await fn();
        if (v) return v;
        await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
      }
    },
    note(line) {
      log += `\n[test] ${line}\n`;
    },
    log: () => log,
    resetLog() {
      log = '';
    },
  };
}
