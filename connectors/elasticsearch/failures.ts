import { SinkError } from '../../src/errors.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { keyString } from '../../src/sink/coalesce.ts';
import type { SinkResult } from '../../src/sink/sink.ts';
import { failureError, type Failure } from '../failure.ts';
import { BulkRequestError } from './bulk.ts';
import { classify } from './classify.ts';

/** How the sink turns failures into its errors and per-record results. */
export interface SinkFailures {
  /** The failure as the sink's error, `message` saying what was being done. */
  fail(failure: Failure, message: string, cause?: unknown): SinkError;
  /** The failed result of one change, naming its table, key and `where` (index, `_id`). */
  forRecord(event: ChangeEvent, where: string, failure: Failure, cause?: unknown): SinkResult;
  /** Anything a client call or a bulk request threw, classified. */
  thrown(err: unknown, what: string): SinkError;
}

export function sinkFailures(sink: string): SinkFailures {
  const fail = (failure: Failure, message: string, cause?: unknown): SinkError => failureError(sink, message, failure, cause);
  return {
    fail,
    forRecord: (event, where, failure, cause) => ({
      ok: false,
      error: fail(failure, `table ${event.table.id}${event.key ? ` key ${keyString(event.key)}` : ''} (${where})`, cause),
    }),
    thrown: (err, what) => (err instanceof BulkRequestError ? fail(err.failure, what, err.cause) : fail(classify(err), what, err)),
  };
}
