// The public API (package entry `cdc-router`): table handlers, transform kinds, custom sinks, and the
// types of the events they see.
export {
  defineHandler,
  defineHandlers,
  type HandlersModule,
  type RouteHandler,
  type TableHandler,
  type TableSpec,
  type TypedHandlers,
} from './handler.ts';
export type {
  TypedChangeEvent as ChangeEvent,
  CreateEvent,
  UpdateEvent,
  DeleteEvent,
  TruncateEvent,
  Int64,
  Decimal,
  DateString,
  TimeString,
  TimestampString,
  Json,
  Toastable,
} from './model/typed-event.ts';
/** The flat event a sink's `write` receives (every op in one shape); handlers see `ChangeEvent`. */
export type { ChangeEvent as UntypedChangeEvent, Op, Row, TableId, ColumnSchema, SourceInfo, Unavailable } from './model/change-event.ts';
export { UNAVAILABLE, isUnavailable } from './model/change-event.ts';
export type { Position } from './model/position.ts';
export { comparePositions, encodePosition } from './model/position.ts';
export { defineSink, OK, type Sink, type SinkContext, type SinkFactory, type SinkResult } from './sink/sink.ts';
export type { Transform, TransformFactory, TypedTransform } from './transform/transform.ts';
export { defineTransform, type TransformKind } from './transform/typed.ts';
export { filter, dropFields, renameFields, flatten, type Renamed } from './transform/builtins.ts';
export { SinkError, TransformError, CdcError } from './errors.ts';
/** Views in TypeScript: `fromTable<Order>('public.orders').groupBy(…).aggregate({ … }).to(sink, { table })`. */
export {
  fromTable,
  fromStream,
  count,
  sum,
  min,
  max,
  avg,
  var_pop,
  var_samp,
  stddev_pop,
  stddev_samp,
  countDistinct,
  custom,
  type AggregatedView,
  type Duration,
  type GroupedView,
  type ProcessContext,
  type ProcessResultRow,
  type ProcessSpec,
  type ResultRow,
  type TypedView,
  type ViewAggregation,
  type ViewSource,
  type WindowBounds,
  type WindowOption,
} from './view/dsl.ts';
export { aggregate } from './view/core/aggregations/index.ts';
export { listState, mapState, valueState, type ListState, type MapState, type StateDecl, type ValueState } from './view/keyed-state.ts';
export type { AggValue, CustomAggregation, JsonValue } from './view/core/aggregation.ts';
