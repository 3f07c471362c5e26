import { CdcError, SinkError, type RecordCoordinates } from '../src/errors.ts';

/**
 * What a connector makes of a failure of its driver or server, the result of each connector's
 * `classify(err)`: whether trying the same write again can help, a stable code (for metrics and the
 * dead-letter queue), and a message without secrets or row data.
 */
export interface Failure {
  readonly retriable: boolean;
  readonly code: string;
  readonly message: string;
  /**
   * The server's own verdict, when it gave one: an HTTP status (Elasticsearch, InfluxDB), a SQLSTATE
   * (PostgreSQL), an error reply's prefix (Redis). Undefined when no answer came.
   */
  readonly status: number | string | undefined;
}

/** A failure that trying again cannot fix, found by the sink itself (no server answer). */
export function permanent(code: string, message: string): Failure {
  return { retriable: false, code, message, status: undefined };
}

/** The failure as the sink's error: `sink <name>: <context>: <failure message>`. */
export function failureError(sink: string, context: string, failure: Failure, cause?: unknown, at?: RecordCoordinates): SinkError {
  return new SinkError(sink, `${context}: ${failure.message}`, { code: failure.code, retriable: failure.retriable, cause, at });
}

/**
 * The verdict of an error the router raised itself (a CdcError): its own code and retriable flag.
 * Every connector's `classify` keeps it, so classifying twice changes nothing.
 */
export function ownFailure(err: unknown): Failure | undefined {
  return err instanceof CdcError ? { retriable: err.retriable, code: err.code, message: err.message, status: undefined } : undefined;
}
