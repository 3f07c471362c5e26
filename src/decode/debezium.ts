import { ConfigError, DecodeError } from '../errors.ts';
import {
  UNAVAILABLE,
  type ChangeEvent,
  type DecodedRecord,
  type Heartbeat,
  type KafkaCoordinates,
  type Op,
  type RawRecord,
  type Row,
  type SourceInfo,
  type TableId,
  type Tombstone,
  type TransactionMarker,
} from '../model/change-event.ts';
import { parseLsn, position, type Position, type PositionKind } from '../model/position.ts';
import { FieldProblem, NeedExactIntegers, compileKeySchema, compileValueSchema, type CompiledSchema } from './connect-schema.ts';
import { isPlaceholderOfAnyType } from './placeholder.ts';
import { SchemaCache, coordinatesOf, type ParsedJson } from './schema-cache.ts';

export interface DecoderOptions {
  /** Topics starting with this carry heartbeats. Default '__debezium-heartbeat' (topic.heartbeat.prefix). */
  heartbeatTopicPrefix?: string;
  /** Topics ending with this carry transaction metadata. Default '.transaction' (topic.transaction). */
  transactionTopicSuffix?: string;
}

export interface Decoder {
  /** Throws DecodeError (with `at` = the record's coordinates and one of DECODE_ERROR_CODES). */
  decode(record: RawRecord): DecodedRecord;
}

/** The `code` of every DecodeError the decoder throws. */
export const DECODE_ERROR_CODES = [
  /** Key or value bytes are not JSON; the message gives the position. */
  'MALFORMED_JSON',
  /** The value is JSON but not an object (or a heartbeat that is not one). */
  'NOT_AN_ENVELOPE',
  /** The value has no `op`: not a Debezium envelope (e.g. already unwrapped by ExtractNewRecordState). */
  'MISSING_OP',
  'UNKNOWN_OP',
  'MISSING_SOURCE',
  /** `source.table` is missing or empty. */
  'MISSING_TABLE',
  /** Create, read or update without an `after` row. */
  'MISSING_AFTER',
  /** A c/u/r/d change whose Kafka key is null or has no columns: sinks could not address the row. */
  'MISSING_KEY',
  /** The key is JSON but not an object of key columns. */
  'BAD_KEY',
  /** `before` or `after` is neither null nor an object. */
  'BAD_ROW',
  /** A column value does not fit its semantic type (the message names the column). */
  'BAD_FIELD',
  /** A schema block cannot be used (e.g. a Decimal without a usable scale). */
  'BAD_SCHEMA',
  /** The source block's position fields are malformed (PostgreSQL `sequence`). */
  'BAD_SOURCE',
  /** A transaction-topic record without status BEGIN/END or an id. */
  'BAD_TRANSACTION',
  /** The Kafka offset is not a non-negative integer (needed as the fallback position). */
  'BAD_OFFSET',
] as const;
export type DecodeErrorCode = (typeof DECODE_ERROR_CODES)[number];

const DEFAULT_HEARTBEAT_PREFIX = '__debezium-heartbeat';
const DEFAULT_TRANSACTION_SUFFIX = '.transaction';

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

function nonEmpty(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function finite(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function hasNoMembers(row: Row): boolean {
  for (const _ in row) return false;
  return true;
}

function isOp(v: string): v is Op {
  return v === 'c' || v === 'u' || v === 'd' || v === 'r' || v === 't';
}

/** Debezium sent booleans before 1.6 and 'true' | 'first' | 'last' | 'incremental' | … since. */
function snapshotOf(v: unknown): string | undefined {
  if (v === true) return 'true';
  return typeof v === 'string' && v !== 'false' && v !== '' ? v : undefined;
}

/** `["<lastCommitLsn>","<lsn>"]`, either may be null. */
const PG_SEQUENCE = /^\[\s*(?:null|"?(\d+)"?)\s*,\s*(?:null|"?(\d+)"?)\s*\]$/;
/** The number suffix of a binlog file name: mysql-bin.000003 -> 000003. */
const BINLOG_NUMBER = /\.(\d+)$/;
const OFFSET = /^\d+$/;

function fail(code: DecodeErrorCode, message: string, kafka: KafkaCoordinates, cause?: unknown): DecodeError {
  return new DecodeError(message, { code, at: coordinatesOf(kafka), cause });
}

function fieldError(problem: FieldProblem, row: string, at: KafkaCoordinates): DecodeError {
  return fail(problem.code, `column ${row}.${problem.path}: ${problem.detail}`, at, problem);
}

/** Rows without a schema: the placeholder is recognised by value alone, on top-level columns. */
function markUnavailable(row: JsonObject): void {
  for (const k in row) {
    const v = row[k];
    if (v !== null && (typeof v === 'string' || typeof v === 'object') && isPlaceholderOfAnyType(v)) row[k] = UNAVAILABLE;
  }
}

class DebeziumDecoder implements Decoder {
  private readonly heartbeatPrefix: string;
  private readonly transactionSuffix: string;
  private readonly values = new SchemaCache('value', compileValueSchema);
  private readonly keys = new SchemaCache('key', compileKeySchema);
  /** Last table seen per topic: saves building a TableId per event, and names tombstones. */
  private readonly tables = new Map<string, TableId>();

  constructor(heartbeatPrefix: string, transactionSuffix: string) {
    this.heartbeatPrefix = heartbeatPrefix;
    this.transactionSuffix = transactionSuffix;
  }

  decode(record: RawRecord): DecodedRecord {
    const kafka: KafkaCoordinates = {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      timestamp: record.timestamp,
    };
    try {
      return this.decodeWith(record, kafka, false);
    } catch (e) {
      // A wide temporal column arrived rounded; its schema has switched to exact parsing.
      if (e instanceof NeedExactIntegers) return this.decodeWith(record, kafka, true);
      throw e;
    }
  }

  private decodeWith(record: RawRecord, kafka: KafkaCoordinates, exact: boolean): DecodedRecord {
    const { topic } = record;
    const valueBytes = record.value;
    const value =
      valueBytes && valueBytes.length > 0 ? this.values.parse(valueBytes, topic, kafka, exact) : undefined;
    const body = value?.body ?? null;

    if (topic.startsWith(this.heartbeatPrefix)) return this.heartbeat(body, kafka);
    if (body === null) return this.tombstone(record, kafka, exact);
    if (!isObject(body)) {
      throw fail('NOT_AN_ENVELOPE', `value is ${jsonKind(body)}, not a Debezium envelope object`, kafka);
    }
    // A table named "transaction" also ends with the suffix; its records have an op.
    if (topic.endsWith(this.transactionSuffix) && !('op' in body)) return this.transaction(body, kafka);
    return this.change(record, body, value?.schema, kafka, exact);
  }

  private heartbeat(body: unknown, kafka: KafkaCoordinates): Heartbeat {
    if (body !== null && !isObject(body)) {
      throw fail('NOT_AN_ENVELOPE', `heartbeat value is ${jsonKind(body)}, expected an object with ts_ms`, kafka);
    }
    return { kind: 'heartbeat', tsMs: body === null ? undefined : finite(body['ts_ms']), kafka };
  }

  private transaction(body: JsonObject, kafka: KafkaCoordinates): TransactionMarker {
    const status = body['status'];
    if (status !== 'BEGIN' && status !== 'END') {
      throw fail('BAD_TRANSACTION', `transaction record has status ${JSON.stringify(status) ?? 'undefined'}, expected "BEGIN" or "END"`, kafka);
    }
    const id = nonEmpty(body['id']);
    if (id === undefined) throw fail('BAD_TRANSACTION', 'transaction record has no "id"', kafka);
    return {
      kind: 'transaction',
      status,
      id,
      eventCount: finite(body['event_count']),
      tsMs: finite(body['ts_ms']),
      kafka,
    };
  }

  private tombstone(record: RawRecord, kafka: KafkaCoordinates, exact: boolean): Tombstone {
    return { kind: 'tombstone', table: this.tableOfTopic(record.topic), key: this.key(record, kafka, exact), kafka };
  }

  private change(
    record: RawRecord,
    body: JsonObject,
    schema: CompiledSchema | undefined,
    kafka: KafkaCoordinates,
    exact: boolean,
  ): ChangeEvent {
    const op = body['op'];
    if (op === undefined || op === null) {
      throw fail('MISSING_OP', 'value has no "op": not a Debezium change envelope (already unwrapped?)', kafka);
    }
    if (typeof op !== 'string' || !isOp(op)) {
      throw fail('UNKNOWN_OP', `unknown op ${JSON.stringify(op)}, expected one of c, u, d, r, t`, kafka);
    }
    const rawSource = body['source'];
    if (!isObject(rawSource)) throw fail('MISSING_SOURCE', `op "${op}" change has no "source" block`, kafka);
    const tableName = nonEmpty(rawSource['table']);
    if (tableName === undefined) throw fail('MISSING_TABLE', 'source block has no "table"', kafka);

    const before = this.row(body['before'], 'before', schema, kafka);
    const after = this.row(body['after'], 'after', schema, kafka);
    if (after === null && (op === 'c' || op === 'r' || op === 'u')) {
      throw fail('MISSING_AFTER', `op "${op}" change has no "after" row`, kafka);
    }
    const key = this.key(record, kafka, exact);
    if (op !== 't' && (key === null || hasNoMembers(key))) {
      throw fail(
        'MISSING_KEY',
        `op "${op}" change has ${key === null ? 'a null Kafka key' : 'an empty key'}; sinks need the row's key (give the table a primary key or set message.key.columns)`,
        kafka,
      );
    }

    const connector = nonEmpty(rawSource['connector']);
    const db = nonEmpty(rawSource['db']);
    const schemaName = nonEmpty(rawSource['schema']);
    const source: SourceInfo = {
      connector,
      name: nonEmpty(rawSource['name']),
      db,
      schema: schemaName,
      table: tableName,
      tsMs: finite(rawSource['ts_ms']),
      snapshot: snapshotOf(rawSource['snapshot']),
      raw: rawSource,
    };
    return {
      kind: 'change',
      op,
      table: this.tableOf(record.topic, db, schemaName, tableName),
      key,
      before,
      after,
      source,
      position: positionOf(rawSource, connector, kafka),
      tsMs: finite(body['ts_ms']),
      kafka,
      columns: schema?.columns,
      keyChange: record.headers['__debezium.newkey'] !== undefined ? 'old' : record.headers['__debezium.oldkey'] !== undefined ? 'new' : undefined,
    };
  }

  private row(v: unknown, label: 'before' | 'after', schema: CompiledSchema | undefined, kafka: KafkaCoordinates): Row | null {
    if (v === null || v === undefined) return null;
    if (!isObject(v)) throw fail('BAD_ROW', `"${label}" is ${jsonKind(v)}, expected an object or null`, kafka);
    if (!schema) markUnavailable(v);
    else if (schema.convertRow) {
      try {
        schema.convertRow(v);
      } catch (e) {
        throw e instanceof FieldProblem ? fieldError(e, label, kafka) : e;
      }
    }
    return v;
  }

  private key(record: RawRecord, kafka: KafkaCoordinates, exact: boolean): Row | null {
    const bytes = record.key;
    if (!bytes || bytes.length === 0) return null;
    const parsed: ParsedJson = this.keys.parse(bytes, record.topic, kafka, exact);
    const key = parsed.body;
    if (key === null) return null;
    if (!isObject(key)) throw fail('BAD_KEY', `key is ${jsonKind(key)}, expected an object of key columns`, kafka);
    const convert = parsed.schema?.convertRow;
    if (convert) {
      try {
        convert(key);
      } catch (e) {
        throw e instanceof FieldProblem ? fieldError(e, 'key', kafka) : e;
      }
    }
    return key;
  }

  /** PostgreSQL and SQL Server name tables `<schema>.<table>`, MySQL `<db>.<table>`. */
  private tableOf(topic: string, db: string | undefined, schema: string | undefined, table: string): TableId {
    const last = this.tables.get(topic);
    if (last !== undefined && last.table === table && last.schema === schema && last.db === db) return last;
    const id = schema !== undefined ? `${schema}.${table}` : db !== undefined ? `${db}.${table}` : table;
    const t: TableId = Object.freeze({ id, db, schema, table });
    this.tables.set(topic, t);
    return t;
  }

  /**
   * A tombstone names no table: `<prefix>.<namespace>.<table>` gives the last two segments. Whether the
   * namespace is a schema or a database is known only from a change seen on the same topic; without
   * one, db and schema stay undefined. A topic of fewer than three segments gives no table.
   */
  private tableOfTopic(topic: string): TableId | undefined {
    const last = topic.lastIndexOf('.');
    const previous = last > 0 ? topic.lastIndexOf('.', last - 1) : -1;
    if (previous <= 0 || last === topic.length - 1 || previous + 1 === last) return undefined;
    const id = topic.slice(previous + 1);
    const seen = this.tables.get(topic);
    if (seen !== undefined && seen.id === id) return seen;
    return Object.freeze({ id, db: undefined, schema: undefined, table: topic.slice(last + 1) });
  }
}

/** Digits from the source can exceed 64 bits; that is a bad record, not a bug. */
function checkedPosition(kind: PositionKind, parts: bigint[], kafka: KafkaCoordinates): Position {
  try {
    return position(kind, parts);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw fail('BAD_SOURCE', `source position ${parts.join(', ')} does not fit 64 bits`, kafka, e);
  }
}

/**
 * - postgresql: [lsn]. Per key, the change LSN follows commit order: a transaction can only change a
 *   row after the previous writer of that row committed (row locks, unique checks), so its change
 *   LSN is past that commit. `sequence`'s lastCommitLsn is null during the snapshot and for the first
 *   streamed event, so it cannot order anything; it is only used as a fallback source of the lsn.
 * - mysql: [binlog file number, pos, row].
 * - otherwise, or without those fields: [Kafka offset].
 */
function positionOf(source: JsonObject, connector: string | undefined, kafka: KafkaCoordinates): Position {
  if (connector === 'postgresql') {
    let sequenceLsn: bigint | undefined;
    const sequence = source['sequence'];
    if (typeof sequence === 'string') {
      const m = PG_SEQUENCE.exec(sequence);
      if (!m) {
        throw fail('BAD_SOURCE', `source.sequence ${JSON.stringify(sequence)} is not ["<lastCommitLsn>","<lsn>"]`, kafka);
      }
      if (m[2] !== undefined) sequenceLsn = BigInt(m[2]);
    }
    const lsn = parseLsn(source['lsn']) ?? sequenceLsn;
    if (lsn !== undefined) return checkedPosition('postgres', [lsn], kafka);
  } else if (connector === 'mysql') {
    const file = source['file'];
    const pos = source['pos'];
    const m = typeof file === 'string' ? BINLOG_NUMBER.exec(file) : null;
    if (m && isCount(pos)) {
      const row = source['row'];
      return checkedPosition('mysql', [BigInt(m[1]!), BigInt(pos), BigInt(isCount(row) ? row : 0)], kafka);
    }
  }
  if (!OFFSET.test(kafka.offset)) {
    throw fail('BAD_OFFSET', `Kafka offset ${JSON.stringify(kafka.offset)} is not a non-negative integer`, kafka);
  }
  return position('kafka-offset', [BigInt(kafka.offset)]);
}

export function createDecoder(options: DecoderOptions = {}): Decoder {
  const heartbeatPrefix = options.heartbeatTopicPrefix ?? DEFAULT_HEARTBEAT_PREFIX;
  const transactionSuffix = options.transactionTopicSuffix ?? DEFAULT_TRANSACTION_SUFFIX;
  const issues = [];
  // Empty strings would match every topic and turn all changes into heartbeats or transactions.
  if (heartbeatPrefix === '') issues.push({ path: 'heartbeatTopicPrefix', message: 'must not be empty' });
  if (transactionSuffix === '') issues.push({ path: 'transactionTopicSuffix', message: 'must not be empty' });
  if (issues.length > 0) throw new ConfigError(issues, 'decoder options');
  return new DebeziumDecoder(heartbeatPrefix, transactionSuffix);
}
