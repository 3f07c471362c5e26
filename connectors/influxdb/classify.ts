import { ownFailure, type Failure } from '../failure.ts';
import { InfluxHttpError, InfluxTransportError } from './client.ts';
import { UnrepresentableError } from './line-protocol.ts';

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
  const own = ownFailure(err);
  if (own) return own;
  if (err instanceof InfluxTransportError) {
    return { retriable: true, code: err.timedOut ? 'INFLUX_TIMEOUT' : 'INFLUX_CONNECTION', message: err.message, status: undefined };
  }
  if (err instanceof InfluxHttpError) return classifyAnswer(err);
  if (err instanceof UnrepresentableError) return { retriable: false, code: 'INFLUX_UNREPRESENTABLE', message: err.message, status: undefined };
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { retriable: false, code: 'INFLUX_ERROR', message, status: undefined };
}

function classifyAnswer(err: InfluxHttpError): Failure {
  const status = err.status;
  const answer = (retriable: boolean, code: string): Failure => ({ retriable, code, message: err.message, status });
  if (status === 404) return answer(true, 'INFLUX_DATABASE_NOT_FOUND');
  if (status === 429 || status >= 500) return answer(true, `INFLUX_HTTP_${status}`);
  if (status === 400) return answer(false, writeRefusalCode(err.serverMessage));
  if (status === 200) return answer(false, 'INFLUX_QUERY');
  return answer(false, `INFLUX_HTTP_${status}`);
}
