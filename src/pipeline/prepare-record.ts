import { CdcError, DecodeError, RouteError, TransformError, errorMessage } from '../errors.ts';
import type { RouterEventMap } from '../events.ts';
import type { ChangeEvent, Op, RawRecord, TableId } from '../model/change-event.ts';
import type { Decoder } from '../decode/debezium.ts';
import type { Route, Router } from '../route/router.ts';

type SkipReason = RouterEventMap['record.skipped']['reason'];

/** What decode, route and the transform chain make of one record; `table` and `op` once it decoded to a change. */
export type PreparedRecord =
  | { readonly kind: 'change'; readonly event: ChangeEvent; readonly decoded: ChangeEvent; readonly route: Route }
  | {
      readonly kind: 'skipped';
      readonly reason: SkipReason;
      readonly table: TableId | undefined;
      readonly op: Op | undefined;
      /** A Debezium heartbeat's time: views move idle partitions' clocks by it. */
      readonly heartbeatMs?: number | undefined;
    }
  | { readonly kind: 'failed'; readonly error: CdcError; readonly table: TableId | undefined; readonly op: Op | undefined };

/**
 * Everything before the sinks, for one record: decode, route, transforms. Shared by the pipeline
 * and `dlq replay`, so that a replay sees exactly what the live service would.
 */
export function prepareRecord(
  record: RawRecord,
  deps: { readonly decoder: Decoder; readonly router: Router; readonly unrouted: 'skip' | 'fail' },
): PreparedRecord {
  let decoded;
  try {
    decoded = deps.decoder.decode(record);
  } catch (err) {
    const error = err instanceof CdcError ? err : new DecodeError(errorMessage(err), { code: 'DECODE_FAILED', at: record, cause: err });
    return { kind: 'failed', error, table: undefined, op: undefined };
  }
  if (decoded.kind === 'heartbeat') return { kind: 'skipped', reason: 'heartbeat', table: undefined, op: undefined, heartbeatMs: decoded.tsMs };
  if (decoded.kind !== 'change') return { kind: 'skipped', reason: decoded.kind, table: undefined, op: undefined };
  const table = decoded.table;
  const op = decoded.op;
  const route = deps.router.route(table);
  if (!route) {
    return deps.unrouted === 'fail'
      ? { kind: 'failed', error: new RouteError(`no route for table ${table.id}`, { code: 'UNROUTED', at: record }), table, op }
      : { kind: 'skipped', reason: 'unrouted', table, op };
  }
  let event: ChangeEvent | null;
  try {
    event = route.apply(decoded);
  } catch (err) {
    const error =
      err instanceof CdcError
        ? err
        : new TransformError(route.table, errorMessage(err), { code: 'TRANSFORM_FAILED', at: record, cause: err });
    return { kind: 'failed', error, table, op };
  }
  if (event === null) {
    // Views read the table as it is: the route's transforms shape what its sinks get, not what views count.
    if (route.views.length > 0) return { kind: 'change', event: decoded, decoded, route: { ...route, sinks: [] } };
    return { kind: 'skipped', reason: 'filtered', table, op };
  }
  return { kind: 'change', event, decoded, route };
}

