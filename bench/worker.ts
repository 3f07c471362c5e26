/**
 * One measured run in its own process (forked by bench/run.ts with the task as its argument).
 * See bench/protocol.ts for the conversation; CPU time is process.cpuUsage() (every thread of the
 * process: JIT, GC, libuv pool) between `start` and `stop` (or the mode finishing by itself).
 */
import type { ModeRunner, ParentMessage, WorkerMessage, WorkerTask } from './protocol.ts';

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) throw new Error('bench/worker.ts runs forked by bench/run.ts (it needs the IPC channel)');
    process.send(message, undefined, {}, () => resolve());
  });
}

const inbox: ParentMessage[] = [];
let wake: (() => void) | undefined;
process.on('message', (m: ParentMessage) => {
  inbox.push(m);
  wake?.();
});

async function receive<T extends ParentMessage['type']>(type: T): Promise<Extract<ParentMessage, { type: T }>> {
  for (;;) {
    const i = inbox.findIndex((m) => m.type === type);
    if (i >= 0) return inbox.splice(i, 1)[0] as Extract<ParentMessage, { type: T }>;
    await new Promise<void>((resolve) => (wake = resolve));
  }
}

async function prepare(task: WorkerTask): Promise<ModeRunner> {
  switch (task.kind) {
    case 'raw':
      return (await import('./mode-raw.ts')).prepareRaw(task);
    case 'naive':
      return (await import('./mode-naive.ts')).prepareNaive(task);
    case 'router':
      return (await import('./mode-router.ts')).prepareRouter(task);
    case 'ceiling':
      return (await import('./mode-ceiling.ts')).prepareCeiling(task);
    case 'floor':
      return (await import('./mode-floor.ts')).prepareFloor(task);
    case 'views':
      return (await import('./mode-views.ts')).prepareViews(task);
  }
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (!arg) throw new Error('usage: worker.ts <task JSON>');
  const task = JSON.parse(arg) as WorkerTask;
  // The parent going away (Ctrl-C, a crash) ends the run.
  process.on('disconnect', () => process.exit(1));
  const runner = await prepare(task);
  await send({ type: 'ready' });
  await receive('start');
  const cpu0 = process.cpuUsage();
  const cpuUs = () => {
    const d = process.cpuUsage(cpu0);
    return d.user + d.system;
  };
  await send({ type: 'started', at: Date.now() });
  await runner.start();
  await send({ type: 'running' });

  let done: { at: number; cpuUs: number } | undefined;
  let failure: unknown;
  void runner.finished?.then(
    async () => {
      done = { at: Date.now(), cpuUs: cpuUs() };
      await send({ type: 'done', ...done, processed: runner.processed() });
    },
    async (err: unknown) => {
      failure = err;
      await send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    },
  );
  const stop = await receive('stop');
  const measured = done ?? { at: Date.now(), cpuUs: cpuUs() };
  const processed = runner.processed();
  const extra = await runner.stop(stop.window);
  if (failure === undefined) await send({ type: 'stopped', ...measured, processed, ...extra });
}

main().then(
  // Clients leave timers behind (kafkajs, pools): the run is over, the process goes.
  () => process.exit(0),
  async (err: unknown) => {
    await send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }).catch(() => undefined);
    process.exit(1);
  },
);
