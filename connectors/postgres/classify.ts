import pg from 'pg';
import { errorMessage, SinkError, type RecordCoordinates } from '../../src/errors.ts';
import { failureError, ownFailure, type Failure } from '../failure.ts';

/**
 * SQLSTATE classes worth another try: connection exception (08), transaction rollback (40:
 * serialization failure, deadlock), insufficient resources (53), operator intervention (57: admin
 * shutdown, statement timeout, cancel), system error (58). Plus lock_not_available and object_in_use.
 */
const RETRIABLE_CLASSES = new Set(['08', '40', '53', '57', '58']);
const RETRIABLE_STATES = new Set(['55P03', '55006']);

/**
 * Classes that a single row can cause: data exception (22: bad value, out of range, invalid text),
 * integrity violation (23: NOT NULL, unique, foreign key, check), cardinality (21: one key twice in a
 * statement) and program limit (54: e.g. an index row too large). Only these are worth bisecting;
 * anything else (privileges, missing objects) fails every row alike.
 */
const ROW_CLASSES = new Set(['21', '22', '23', '54']);

/** Node socket errors that say the server is unreachable for now. */
const RETRIABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/** node-postgres reports lost connections and its own timeouts without a code. */
const RETRIABLE_MESSAGE =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|Query read timeout|not queryable|Client was closed/i;

export function sqlState(err: unknown): string | undefined {
  if (err instanceof pg.DatabaseError && typeof err.code === 'string' && err.code.length === 5) return err.code;
  return undefined;
}

/**
 * Classifies a driver or server failure. Retriable: the SQLSTATE classes and states above, socket
 * errors that say the server is unreachable, node-postgres's lost connections and timeouts. Not:
 * every other SQLSTATE (bad values, constraints, privileges, missing objects) and unknown errors,
 * so that a bug does not spin forever. The code is `PG_<SQLSTATE>`, `PG_<errno>` or `PG_ERROR`.
 */
export function classify(err: unknown): Failure {
  const own = ownFailure(err);
  if (own) return own;
  const state = sqlState(err);
  const errno = (err as { code?: unknown } | null)?.code;
  const code = state ? `PG_${state}` : typeof errno === 'string' ? `PG_${errno}` : 'PG_ERROR';
  let retriable: boolean;
  if (state) retriable = RETRIABLE_CLASSES.has(state.slice(0, 2)) || RETRIABLE_STATES.has(state);
  else if (typeof errno === 'string' && RETRIABLE_ERRNO.has(errno)) retriable = true;
  else retriable = err instanceof Error && RETRIABLE_MESSAGE.test(err.message);
  return { retriable, code, message: describeDbError(err), status: state };
}

export function isRetriable(err: unknown): boolean {
  return classify(err).retriable;
}

/** A permanent failure that one bad row can cause: bisecting the statement finds that row. */
export function isRowError(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && ROW_CLASSES.has(state.slice(0, 2));
}

/**
 * The statement met a table that changed under the cached metadata: undefined column or table, or no
 * unique index for ON CONFLICT any more. Reloading the metadata (and evolving again) may fix it.
 */
export function isStaleMetadata(err: unknown): boolean {
  const state = sqlState(err);
  return state === '42703' || state === '42P01' || state === '42P10';
}

/** Whether the connection itself is suspect: the pool must discard it instead of reusing it. */
export function isConnectionLost(err: unknown): boolean {
  return !(err instanceof pg.DatabaseError) || sqlState(err)?.startsWith('08') === true || sqlState(err) === '57P01';
}

/** The driver's message with its SQLSTATE, e.g. 'null value in column "x" … (SQLSTATE 23502)'. */
export function describeDbError(err: unknown): string {
  const state = sqlState(err);
  return state ? `${errorMessage(err)} (SQLSTATE ${state})` : errorMessage(err);
}

export function toSinkError(sink: string, message: string, err: unknown, at?: RecordCoordinates): SinkError {
  if (err instanceof SinkError) return err;
  return failureError(sink, message, classify(err), err, at);
}
