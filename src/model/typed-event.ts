import type { ChangeEvent, KafkaCoordinates, Row, SourceInfo, TableId, ColumnSchema, Unavailable } from './change-event.ts';
import type { Position } from './position.ts';

/*
 * The typed view of a change for handler and transform authors: a union by `op`, so that narrowing on
 * `op` tells which row images exist. The pipeline itself passes the flat `ChangeEvent` (sinks read
 * `after ?? before` without caring about the op); both describe the same objects, and the decoder
 * guarantees the invariants spelled out here (it refuses a create, read or update without `after`).
 */

/** An int64 column: a number within ±(2^53 − 1), a bigint beyond (exact, never rounded). */
export type Int64 = number | bigint;
/** A Decimal / VariableScaleDecimal column: the exact decimal text, e.g. "1234.50" (scale kept). */
export type Decimal = string;
/** A date column: "2024-01-31". */
export type DateString = string;
/** A time-of-day column: "13:45:00.123456", keeping the source precision. */
export type TimeString = string;
/** A timestamp column, ISO-8601 at the source precision: "2024-01-31T13:45:00.123456" without a zone (timestamp), zoned ones as the connector sent them ("2024-01-31T13:45:00.123456Z"). */
export type TimestampString = string;
/** A Json / Jsonb column, parsed (sinks still write every digit of its numbers). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/**
 * A column that can hold the unchanged-TOAST marker in an update (PostgreSQL, REPLICA IDENTITY
 * DEFAULT: text, bytea, arrays, Json, maps): the update did not touch it and the sink keeps what it has.
 */
export type Toastable<T> = T | Unavailable;

interface EventBase {
  readonly kind: 'change';
  readonly table: TableId;
  /** The record key's fields (the table's primary key, or the message key columns). */
  readonly key: Readonly<Row> | null;
  readonly source: SourceInfo;
  readonly position: Position;
  /** The envelope's ts_ms: when the connector processed the change. */
  readonly tsMs: number | undefined;
  readonly kafka: KafkaCoordinates;
  /** Columns of the row, when the value carried a schema block. */
  readonly columns: readonly ColumnSchema[] | undefined;
}

/** An insert (`c`) or a snapshot read (`r`): the new row, no before image. */
export interface CreateEvent<R extends object = Row> extends EventBase {
  readonly op: 'c' | 'r';
  readonly before: null;
  readonly after: Readonly<R>;
}

/**
 * An update. `before` is null unless the table's replica identity sends one, and partial when it is
 * the key only (PostgreSQL REPLICA IDENTITY DEFAULT with a changed key).
 */
export interface UpdateEvent<R extends object = Row> extends EventBase {
  readonly op: 'u';
  readonly before: Readonly<Partial<R>> | null;
  readonly after: Readonly<R>;
}

/** A delete: the before image (often only the key columns), no after. */
export interface DeleteEvent<R extends object = Row> extends EventBase {
  readonly op: 'd';
  readonly before: Readonly<Partial<R>> | null;
  readonly after: null;
}

/** A truncate of the whole table: no rows. */
export interface TruncateEvent extends EventBase {
  readonly op: 't';
  readonly before: null;
  readonly after: null;
}

/** A change of a table whose rows are `R`, narrowed by `op`. */
export type TypedChangeEvent<R extends object = Row> = CreateEvent<R> | UpdateEvent<R> | DeleteEvent<R> | TruncateEvent;

/** What an event's row images must hold for its op; undefined when they do, else what is wrong. */
export function typedEventProblem(event: ChangeEvent): string | undefined {
  switch (event.op) {
    case 'c':
    case 'r':
    case 'u':
      return event.after === null ? `op "${event.op}" change has no "after" row` : undefined;
    case 'd':
      return event.after !== null ? 'a delete has an "after" row' : undefined;
    case 't':
      return event.before !== null || event.after !== null ? 'a truncate has a row image' : undefined;
  }
}
