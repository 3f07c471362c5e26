import type { RetryConfig } from '../config/schema.ts';
import { isRetriable } from '../errors.ts';

export class AbortedError extends Error {
  constructor(reason?: unknown) {
    super(`aborted${reason ? `: ${String(reason)}` : ''}`);
    this.name = 'AbortedError';
  }
}

export interface RetryPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  /** 0..1: each delay is spread uniformly over ±jitter of itself, so clients do not retry in lockstep. */
  readonly jitter: number;
  /** Give up after this long (ms); undefined retries forever. */
  readonly deadlineMs?: number | undefined;
}

export function policyFromConfig(c: RetryConfig): RetryPolicy {
  return { initialMs: c.initial_ms, maxMs: c.max_ms, factor: c.factor, jitter: c.jitter, deadlineMs: c.deadline_ms };
}

export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** attempt);
  const spread = base * policy.jitter;
  return Math.max(0, Math.round(base - spread + random() * 2 * spread));
}

/** Resolves after ms, or rejects with AbortedError as soon as the signal fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError(signal.reason));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryHooks {
  readonly signal?: AbortSignal;
  /** Called before each wait; for logs and metrics. */
  readonly onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Decides whether an error is worth retrying; defaults to the error's own `retriable` flag. */
  readonly retriable?: (err: unknown) => boolean;
}

/**
 * The one retrier: runs fn until it succeeds, a non-retriable error is thrown, the deadline passes,
 * or the signal aborts (then AbortedError).
 */
export async function retry<T>(policy: RetryPolicy, fn: (attempt: number) => Promise<T>, hooks: RetryHooks = {}): Promise<T> {
  const started = Date.now();
  const canRetry = hooks.retriable ?? isRetriable;
  for (let attempt = 0; ; attempt++) {
    if (hooks.signal?.aborted) throw new AbortedError(hooks.signal.reason);
    try {
      return await fn(attempt);
    } catch (err) {
      if (!canRetry(err)) throw err;
      const delay = backoffDelay(policy, attempt);
      if (policy.deadlineMs !== undefined && Date.now() + delay - started > policy.deadlineMs) throw err;
      hooks.onRetry?.(err, attempt, delay);
      await sleep(delay, hooks.signal);
    }
  }
}
