/** Forked workers (bench/worker.ts), and their messages awaited by type. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ParentMessage, WorkerMessage, WorkerTask } from './protocol.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** A forked worker and its messages, awaited by type; a failure or an exit rejects every wait. */
export interface WorkerHandle {
  readonly child: ChildProcess;
  next<T extends WorkerMessage['type']>(type: T, timeoutMs: number): Promise<Extract<WorkerMessage, { type: T }>>;
  send(message: ParentMessage): void;
  /** Resolves when the process has exited; kills it after `timeoutMs`. */
  exit(timeoutMs: number): Promise<void>;
}

export function startWorker(task: WorkerTask): WorkerHandle {
  // BENCH_CPU_PROFILE=<dir>: every worker writes a V8 CPU profile there (open it in Chrome DevTools).
  const profile = process.env['BENCH_CPU_PROFILE'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_CPU_PROFILE']}`] : [];
  const child = fork(WORKER, [JSON.stringify(task)], { cwd: ROOT, execArgv: ['--import', 'tsx', ...profile], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox: WorkerMessage[] = [];
  let broken: Error | undefined;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  child.on('message', (m: WorkerMessage) => {
    if (m.type === 'failed') broken = new Error(`worker failed: ${m.message}`);
    else inbox.push(m);
    notify();
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      broken ??= new Error(`worker exited (code ${code}, signal ${signal})`);
      notify();
      resolve();
    }),
  );
  return {
    child,
    next: <T extends WorkerMessage['type']>(type: T, timeoutMs: number) =>
      new Promise<Extract<WorkerMessage, { type: T }>>((resolve, reject) => {
        const check = () => {
          const i = inbox.findIndex((m) => m.type === type);
          if (i < 0 && !broken) return;
          waiters.delete(check);
          clearTimeout(deadline);
          if (i >= 0) resolve(inbox.splice(i, 1)[0] as Extract<WorkerMessage, { type: T }>);
          else reject(broken);
        };
        const deadline = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`worker: no ${type} within ${Math.round(timeoutMs / 1000)} s`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    send(message) {
      if (child.connected) child.send(message);
    },
    async exit(timeoutMs) {
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

