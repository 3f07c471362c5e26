import { SinkError } from '../../src/errors.ts';
import { failureError, ownFailure, type Failure } from '../failure.ts';

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

/** An error reply text (from a reply error or a row status of the scripts). */
export function classifyReply(message: string): Failure {
  const prefix = replyCode(message);
  if (!prefix) return { retriable: false, code: 'REDIS_ERROR', message, status: undefined };
  return { retriable: RETRIABLE_REPLIES.has(prefix), code: `REDIS_${prefix}`, message, status: prefix };
}

/**
 * Anything ioredis rejected with. Reply errors carry the server's verdict; every other ioredis
 * error is about the connection (refused, reset, closed, timed out, offline), so retriable.
 * Programmer errors (TypeError, RangeError…) are not.
 */
export function classify(err: unknown): Failure {
  const own = ownFailure(err);
  if (own) return own;
  if (!(err instanceof Error)) return { retriable: false, code: 'REDIS_ERROR', message: String(err), status: undefined };
  const message = err.message;
  if (err.name === 'ReplyError') return classifyReply(message);
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError || err instanceof ReferenceError) {
    return { retriable: false, code: 'REDIS_CLIENT_BUG', message, status: undefined };
  }
  if (/timed? ?out/i.test(message) || (err as NodeJS.ErrnoException).code === 'ETIMEDOUT') {
    return { retriable: true, code: 'REDIS_TIMEOUT', message, status: undefined };
  }
  return { retriable: true, code: 'REDIS_CONNECTION', message, status: undefined };
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
  return failureError(sink, context, classify(err), scrubbed(err));
}
