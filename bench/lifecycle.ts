/** The orchestrator's log (timestamped, on stderr) and the cleanups of what is under way. */

const began = performance.now();

export function log(line: string): void {
  console.error(`[${((performance.now() - began) / 1000).toFixed(1).padStart(6)} s] ${line}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const pending = new Set<() => Promise<unknown>>();

/** Runs `fn`, then `cleanup` whatever happens; on SIGINT/SIGTERM meanwhile, `cleanup` runs before exiting. */
export async function withCleanup<T>(cleanup: () => Promise<unknown>, fn: () => Promise<T>): Promise<T> {
  pending.add(cleanup);
  try {
    return await fn();
  } finally {
    pending.delete(cleanup);
    await cleanup().catch((err: unknown) => log(`  cleanup failed: ${String(err)}`));
  }
}

export function cleanUpOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: cleaning up`);
      void Promise.allSettled([...pending].map((c) => c())).finally(() => process.exit(130));
    });
  }
}
