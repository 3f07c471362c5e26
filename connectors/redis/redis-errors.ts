import { SinkError } from '../../src/errors.ts';

/**
 * Error replies that describe the server's state, not the record: trying again later can succeed.
 * Authentication and ACL refusals (NOAUTH, WRONGPASS, NOPERM) and a standalone client pointed at a
 * cluster (MOVED, ASK) are fixed by an operator, not by dead-lettering every record, so they are
 * retried too.
 */
const RETRIABLE_REPLIES = new Set([
  'LOADING',
  'BUSY',
  'READONLY',
  'CLUSTERDOWN',
  'TRYAGAIN',
  'MASTERDOWN',
  'NOREPLICAS',
  'OOM',
  'NOSCRIPT',
  'MOVED',
  'ASK',
  'NOAUTH',
  'WRONGPASS',
  'NOPERM',
]);

/** The error code prefix of a reply ('WRONGTYPE Operation against…' -> 'WRONGTYPE'), if any. */
export function replyCode(message: string): string | undefined {
  const m = /^([A-Z][A-Z_-]*)(?:\s|$)/.exec(message);
  return m?.[1];
}

export interface Classified {
  readonly code: string;
  readonly retriable: boolean;
}

/** An error reply text (from a reply error or a row status of the scripts). */
export function classifyReply(message: string): Classified {
  const prefix = replyCode(message);
  if (!prefix) return { code: 'REDIS_ERROR', retriable: false };
  return { code: `REDIS_${prefix}`, retriable: RETRIABLE_REPLIES.has(prefix) };
}

/**
 * Anything ioredis rejected with. Reply errors carry the server's verdict; every other ioredis
 * error is about the connection (refused, reset, closed, timed out, offline), so retriable.
 * Programmer errors (TypeError, RangeError…) are not.
 */
export function classifyRedisError(err: unknown): Classified {
  if (!(err instanceof Error)) return { code: 'REDIS_ERROR', retriable: false };
  if (err.name === 'ReplyError') return classifyReply(err.message);
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError || err instanceof ReferenceError) {
    return { code: 'REDIS_CLIENT_BUG', retriable: false };
  }
  if (/timed? ?out/i.test(err.message) || (err as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
    return { code: 'REDIS_TIMEOUT', retriable: true };
  }
  return { code: 'REDIS_CONNECTION', retriable: true };
}

/**
 * A copy of an ioredis error fit to keep as a cause or to log: ioredis attaches the failed command
 * with all its arguments, which are row data (megabytes for a script call) or, for AUTH, secrets.
 */
export function scrubbed(err: unknown): unknown {
  if (!(err instanceof Error) || !('command' in err)) return err;
  const copy = new Error(err.message);
  copy.name = err.name;
  copy.stack = err.stack;
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined) Object.assign(copy, { code });
  return copy;
}

export function toSinkError(sink: string, context: string, err: unknown): SinkError {
  if (err instanceof SinkError) return err;
  const { code, retriable } = classifyRedisError(err);
  const message = err instanceof Error ? err.message : String(err);
  return new SinkError(sink, `${context}: ${message}`, { code, retriable, cause: scrubbed(err) });
}
