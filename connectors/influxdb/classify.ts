import { InfluxHttpError, InfluxTransportError } from './client.ts';
import { UnrepresentableError } from './line-protocol.ts';

/** What we make of a failure: whether trying again can help, a stable code, a message without secrets. */
export interface Failure {
  readonly retriable: boolean;
  readonly code: string;
  readonly message: string;
}

/** A 400 from /write names what it refused; the code says which kind, for the dead-letter queue. */
function writeRefusalCode(message: string): string {
  if (message.includes('field type conflict')) return 'INFLUX_FIELD_TYPE_CONFLICT';
  if (message.startsWith('partial write')) return 'INFLUX_PARTIAL_WRITE';
  if (message.includes('unable to parse')) return 'INFLUX_PARSE';
  return 'INFLUX_HTTP_400';
}

/**
 * Connection refused or reset, timeouts, 429 and 5xx are retriable; 404 too (the database was dropped
 * under us: the sink creates it again before the next write). Other answers (400 partial writes,
 * field type conflicts and parse errors, 401/403 credentials, 413 too large) are about the request
 * itself and never succeed again unchanged. Unknown errors are not retriable either, so that a bug
 * does not spin forever.
 */
export function classify(err: unknown): Failure {
  if (err instanceof InfluxTransportError) {
    return { retriable: true, code: err.timedOut ? 'INFLUX_TIMEOUT' : 'INFLUX_CONNECTION', message: err.message };
  }
  if (err instanceof InfluxHttpError) {
    const s = err.status;
    if (s === 404) return { retriable: true, code: 'INFLUX_DATABASE_NOT_FOUND', message: err.message };
    if (s === 429 || s >= 500) return { retriable: true, code: `INFLUX_HTTP_${s}`, message: err.message };
    if (s === 400) return { retriable: false, code: writeRefusalCode(err.serverMessage), message: err.message };
    if (s === 200) return { retriable: false, code: 'INFLUX_QUERY', message: err.message };
    return { retriable: false, code: `INFLUX_HTTP_${s}`, message: err.message };
  }
  if (err instanceof UnrepresentableError) return { retriable: false, code: 'INFLUX_UNREPRESENTABLE', message: err.message };
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { retriable: false, code: 'INFLUX_ERROR', message };
}
