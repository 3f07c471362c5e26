import { errors } from '@elastic/elasticsearch';
import { ownFailure, type Failure } from '../failure.ts';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `type: reason (caused by type: reason)` of an Elasticsearch error object. */
export function describeServerError(error: unknown): string {
  if (!isRecord(error)) return typeof error === 'string' ? error : 'unknown error';
  const head = `${String(error['type'] ?? 'error')}: ${String(error['reason'] ?? '')}`;
  const cause = error['caused_by'];
  return isRecord(cause) ? `${head} (caused by ${describeServerError(cause)})` : head;
}

/** Throttling and server-side trouble may clear up; anything else 4xx is about the request itself. */
export function isRetriableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/**
 * Classifies a client or transport failure. Connection problems, timeouts, 429 and 5xx are retriable;
 * other HTTP answers (400 mapping errors, 401/403 credentials, 404) are not. Unknown errors are not
 * either, so that a bug does not spin forever.
 */
export function classify(err: unknown): Failure {
  const own = ownFailure(err);
  if (own) return own;
  if (err instanceof errors.ResponseError) {
    const status = err.statusCode ?? 0;
    const body: unknown = err.body;
    const detail = isRecord(body) && body['error'] !== undefined ? describeServerError(body['error']) : err.message;
    return { retriable: status === 0 || isRetriableStatus(status), code: `ES_HTTP_${status}`, message: `HTTP ${status} ${detail}`, status };
  }
  if (err instanceof errors.TimeoutError) return transport('ES_TIMEOUT', err);
  if (err instanceof errors.NoLivingConnectionsError) return transport('ES_NO_LIVING_CONNECTIONS', err);
  if (err instanceof errors.ConnectionError) return transport('ES_CONNECTION', err);
  if (err instanceof errors.RequestAbortedError) return transport('ES_ABORTED', err);
  // A garbled answer (a proxy in the way, a cut connection) says nothing about the request.
  if (err instanceof errors.DeserializationError) return transport('ES_BAD_RESPONSE', err);
  if (err instanceof errors.ProductNotSupportedError) {
    return { retriable: false, code: 'ES_NOT_ELASTICSEARCH', message: err.message, status: undefined };
  }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { retriable: false, code: 'ES_ERROR', message, status: undefined };
}

function transport(code: string, err: Error): Failure {
  return { retriable: true, code, message: `${err.name}: ${err.message}`, status: undefined };
}

/** Outcome of one bulk item: undefined for success, a failure otherwise. */
export function classifyItem(action: string, status: number, error: unknown): Failure | undefined {
  if (status >= 200 && status < 300) return undefined;
  // External versioning refused an older or equal version: the stored document is as new or newer.
  if (status === 409) return undefined;
  // Deleting a document that is not there still records the tombstone version.
  if (status === 404 && action === 'delete' && error === undefined) return undefined;
  return { retriable: isRetriableStatus(status), code: `ES_ITEM_${status}`, message: describeServerError(error), status };
}
