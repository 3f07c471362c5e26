import type { RecordCoordinates } from '../errors.ts';
import type { Position } from './position.ts';

/** Debezium ops: create, update, delete, read (snapshot), truncate. */
export type Op = 'c' | 'u' | 'd' | 'r' | 't';
export const OPS: readonly Op[] = ['c', 'u', 'd', 'r', 't'];

export type Row = Record<string, unknown>;

/**
 * Debezium sends `__debezium_unavailable_value` for a TOASTed column that an update did not touch
 * (REPLICA IDENTITY DEFAULT). The decoder replaces it with this marker so that no sink can mistake it
 * for data: a sink leaves the stored column as it is.
 */
export const UNAVAILABLE: unique symbol = Symbol.for('cdc-router.unavailable-value');
export type Unavailable = typeof UNAVAILABLE;
export const DEBEZIUM_UNAVAILABLE_PLACEHOLDER = '__debezium_unavailable_value';

export function isUnavailable(v: unknown): v is Unavailable {
  return v === UNAVAILABLE;
}

/** A table as routes name it: `<schema>.<table>` (PostgreSQL) or `<db>.<table>` (MySQL). */
export interface TableId {
  readonly id: string;
  readonly db: string | undefined;
  readonly schema: string | undefined;
  readonly table: string;
}

/** The envelope's `source` block, with the fields every connector has made explicit. */
export interface SourceInfo {
  readonly connector: string | undefined;
  readonly name: string | undefined;
  readonly db: string | undefined;
  readonly schema: string | undefined;
  readonly table: string | undefined;
  readonly tsMs: number | undefined;
  /** 'true', 'first', 'last', 'incremental', … or undefined when not a snapshot record. */
  readonly snapshot: string | undefined;
  /** Everything the connector sent (lsn, txId, sequence, file, pos, row, gtid, …). */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** Kafka coordinates of the record a change came from. */
export interface KafkaCoordinates extends RecordCoordinates {
  /** Broker append (or producer) timestamp, ms since epoch. */
  readonly timestamp: number;
  /** The partition's end offset when the record was fetched: the record after the last is caught up. */
  readonly highWatermark?: string | undefined;
}

/** Column type as the Debezium schema describes it; sinks use it to create and evolve tables. */
export interface ColumnSchema {
  readonly name: string;
  /** Connect type as JsonConverter names it: int8, int16, int32, int64, float, double, boolean, string, bytes, array, map, struct. */
  readonly type: string;
  /** Semantic type name, e.g. io.debezium.time.MicroTimestamp or org.apache.kafka.connect.data.Decimal. */
  readonly semantic: string | undefined;
  readonly optional: boolean;
  readonly parameters: Readonly<Record<string, string>> | undefined;
  /** Element type for arrays. */
  readonly items: ColumnSchema | undefined;
  /** Fields of a struct (e.g. a geometry's x, y, wkb, srid); absent for other types. */
  readonly fields?: readonly ColumnSchema[] | undefined;
  /** Key and value types of a map (JsonConverter writes string-keyed maps as objects, others as [key, value] pairs). */
  readonly keys?: ColumnSchema | undefined;
  readonly values?: ColumnSchema | undefined;
}

export interface ChangeEvent<R extends object = Row> {
  readonly kind: 'change';
  readonly op: Op;
  readonly table: TableId;
  /** The record key's fields (the table's primary key, or the message key columns). */
  readonly key: Readonly<Row> | null;
  readonly before: Readonly<R> | null;
  readonly after: Readonly<R> | null;
  readonly source: SourceInfo;
  readonly position: Position;
  /** The envelope's ts_ms: when the connector processed the change. */
  readonly tsMs: number | undefined;
  readonly kafka: KafkaCoordinates;
  /** Columns of the row, when the value carried a schema block. */
  readonly columns: readonly ColumnSchema[] | undefined;
  /**
   * Half of a primary-key change (Debezium's `__debezium.newkey` / `__debezium.oldkey` headers): `old`
   * on the delete of the old key, `new` on the create of the new key. Both carry the same position.
   */
  readonly keyChange?: 'old' | 'new' | undefined;
}

/** A null value after a delete: log compaction's marker. Carries no position, so it writes nothing. */
export interface Tombstone {
  readonly kind: 'tombstone';
  readonly table: TableId | undefined;
  readonly key: Readonly<Row> | null;
  readonly kafka: KafkaCoordinates;
}

/** A record of Debezium's heartbeat topic: proof of liveness, not a table change. */
export interface Heartbeat {
  readonly kind: 'heartbeat';
  readonly tsMs: number | undefined;
  readonly kafka: KafkaCoordinates;
}

/** A record of Debezium's transaction metadata topic (BEGIN / END). */
export interface TransactionMarker {
  readonly kind: 'transaction';
  readonly status: 'BEGIN' | 'END';
  readonly id: string;
  readonly eventCount: number | undefined;
  readonly tsMs: number | undefined;
  readonly kafka: KafkaCoordinates;
}

export type DecodedRecord = ChangeEvent | Tombstone | Heartbeat | TransactionMarker;

/** What a Kafka record looks like before decoding; the consumer hands these to the decoder. */
export interface RawRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly timestamp: number;
  /** The partition's end offset when the record was fetched (absent when not known). */
  readonly highWatermark?: string | undefined;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Readonly<Record<string, Buffer | undefined>>;
}
