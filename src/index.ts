// Public API for table handlers and custom sinks.
export { defineHandler, defineHandlers, type HandlersModule, type TableHandler } from './handler.ts';
export type { ChangeEvent, Op, Row, TableId, ColumnSchema } from './model/change-event.ts';
export { UNAVAILABLE, isUnavailable } from './model/change-event.ts';
export type { Position } from './model/position.ts';
export { comparePositions, encodePosition } from './model/position.ts';
export { defineSink, OK, type Sink, type SinkFactory, type SinkResult } from './sink/sink.ts';
export type { Transform } from './transform/transform.ts';
export { SinkError, CdcError } from './errors.ts';
