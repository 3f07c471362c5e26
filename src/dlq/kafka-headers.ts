import type { ErrorStage } from '../errors.ts';
import type { DeadLetter, DeadLetterContext, DeadLetterStatus } from './dead-letter-queue.ts';

/**
 * Header layout of the Kafka dead-letter topic. An entry record is the original record (key, value
 * and headers byte for byte) plus Kafka Connect's error headers, so Connect tooling reads it, plus
 * ours for what Connect has no name for. Values are UTF-8 text; numbers in decimal.
 */
export const CONNECT_HEADERS = {
  topic: '__connect.errors.topic',
  partition: '__connect.errors.partition',
  offset: '__connect.errors.offset',
  connector: '__connect.errors.connector.name',
  stage: '__connect.errors.stage',
  /** In Connect: the class that was running (converter, transform, task); here the component. */
  className: '__connect.errors.class.name',
  exceptionClass: '__connect.errors.exception.class.name',
  message: '__connect.errors.exception.message',
  stacktrace: '__connect.errors.exception.stacktrace',
} as const;

export const CDC_HEADERS = {
  stage: 'cdc.errors.stage',
  sink: 'cdc.errors.sink',
  table: 'cdc.errors.table',
  code: 'cdc.errors.code',
  attempts: 'cdc.errors.attempts',
  timestamp: 'cdc.errors.timestamp.ms',
  firstFailure: 'cdc.errors.first.failure.ms',
  lastFailure: 'cdc.errors.last.failure.ms',
} as const;

/**
 * A status marker: a record keyed by the entry id, with this header (replayed | discarded) and no
 * value. Listing folds markers onto their entries; the last marker of an id (by offset) wins.
 */
export const STATUS_HEADER = 'cdc.dlq.status';

const RESERVED = new Set<string>([...Object.values(CONNECT_HEADERS), ...Object.values(CDC_HEADERS), STATUS_HEADER]);

/** Connect's ErrorReporter stages (org.apache.kafka.connect.runtime.errors.Stage). */
export type ConnectStage = 'KEY_CONVERTER' | 'VALUE_CONVERTER' | 'TRANSFORMATION' | 'TASK_PUT';

const KEY_CODES = new Set(['BAD_KEY', 'MISSING_KEY']);

/**
 * Our stage as Connect names it: decode is the converter (the key's when the key was the
 * problem), route, transform and view are TRANSFORMATION (Connect routes with SMTs; a view is
 * processing before any sink), sink is TASK_PUT.
 */
export function connectStage(stage: ErrorStage, code: string, message: string): ConnectStage {
  switch (stage) {
    case 'decode':
      // The decoder names the part it could not read: "<coordinates>: key is not valid JSON…".
      return KEY_CODES.has(code) || /(^|: )key /.test(message) ? 'KEY_CONVERTER' : 'VALUE_CONVERTER';
    case 'route':
    case 'transform':
    case 'view':
      return 'TRANSFORMATION';
    default:
      return 'TASK_PUT';
  }
}

function component(c: DeadLetterContext): string {
  switch (c.stage) {
    case 'decode':
      return 'cdc-router.decode.DebeziumDecoder';
    case 'route':
      return 'cdc-router.route.Router';
    case 'transform':
      return 'cdc-router.transform.Chain';
    case 'sink':
      return `cdc-router.sink.${c.sink ?? 'unknown'}`;
    default:
      return `cdc-router.${c.stage}`;
  }
}

export type KafkaHeaderValue = Buffer | string | (Buffer | string)[] | undefined;
export type KafkaHeaders = Record<string, KafkaHeaderValue>;

/**
 * The headers of an entry record. An original header that happens to carry one of our names is
 * kept too: written first, ours after it (Kafka allows repeated names), and read back in that order.
 */
export function entryHeaders(letter: DeadLetter, connector: string): KafkaHeaders {
  const c = letter.context;
  const ours: Record<string, string | undefined> = {
    [CONNECT_HEADERS.topic]: c.topic,
    [CONNECT_HEADERS.partition]: String(c.partition),
    [CONNECT_HEADERS.offset]: c.offset,
    [CONNECT_HEADERS.connector]: connector,
    [CONNECT_HEADERS.stage]: connectStage(c.stage, c.errorCode, c.errorMessage),
    [CONNECT_HEADERS.className]: component(c),
    [CONNECT_HEADERS.exceptionClass]: c.errorClass,
    [CONNECT_HEADERS.message]: c.errorMessage,
    [CONNECT_HEADERS.stacktrace]: c.errorStack,
    [CDC_HEADERS.stage]: c.stage,
    [CDC_HEADERS.sink]: c.sink,
    [CDC_HEADERS.table]: c.table,
    [CDC_HEADERS.code]: c.errorCode,
    [CDC_HEADERS.attempts]: String(c.attempts),
    [CDC_HEADERS.timestamp]: String(c.timestamp),
    [CDC_HEADERS.firstFailure]: String(c.firstFailureAt),
    [CDC_HEADERS.lastFailure]: String(c.lastFailureAt),
  };
  const headers: KafkaHeaders = { ...letter.headers };
  for (const [name, value] of Object.entries(ours)) {
    if (value === undefined) continue;
    const original = letter.headers[name];
    headers[name] = original === undefined ? value : [original, value];
  }
  return headers;
}

export function markerHeaders(status: Exclude<DeadLetterStatus, 'open'>): KafkaHeaders {
  return { [STATUS_HEADER]: status };
}

function asBuffer(v: Buffer | string | null | undefined): Buffer | undefined {
  if (v === undefined || v === null) return undefined;
  return Buffer.isBuffer(v) ? v : Buffer.from(v);
}

/** Splits a consumed header into the original record's value (if any) and ours (if any). */
function split(name: string, v: KafkaHeaderValue | null): { original: Buffer | undefined; ours: string | undefined; present: boolean } {
  const values = Array.isArray(v) ? v : v === undefined ? [] : [v];
  if (!RESERVED.has(name)) return { original: asBuffer(values[values.length - 1]), ours: undefined, present: values.length > 0 };
  const last = asBuffer(values[values.length - 1]);
  return {
    original: values.length > 1 ? asBuffer(values[0]) : undefined,
    ours: last?.toString('utf8'),
    present: values.length > 1,
  };
}

export type ParsedRecord =
  | { readonly kind: 'entry'; readonly letter: DeadLetter }
  | { readonly kind: 'marker'; readonly id: string; readonly status: Exclude<DeadLetterStatus, 'open'> }
  | { readonly kind: 'foreign' };

function int(text: string | undefined, fallback = 0): number {
  const n = text === undefined ? NaN : Number(text);
  return Number.isFinite(n) ? n : fallback;
}

/** Reads a record of the dead-letter topic back: an entry, a status marker, or something else. */
export function parseRecord(key: Buffer | null, value: Buffer | null, raw: Record<string, KafkaHeaderValue | null>): ParsedRecord {
  const ours: Record<string, string | undefined> = {};
  const headers: Record<string, Buffer | undefined> = {};
  for (const [name, v] of Object.entries(raw)) {
    const s = split(name, v);
    if (s.ours !== undefined) ours[name] = s.ours;
    if (s.present || !RESERVED.has(name)) headers[name] = s.original;
  }
  const status = ours[STATUS_HEADER];
  if (status === 'replayed' || status === 'discarded') {
    return key ? { kind: 'marker', id: key.toString('utf8'), status } : { kind: 'foreign' };
  }
  const topic = ours[CONNECT_HEADERS.topic];
  if (topic === undefined) return { kind: 'foreign' };
  const stage = (ours[CDC_HEADERS.stage] ?? 'sink') as ErrorStage;
  return {
    kind: 'entry',
    letter: {
      key,
      value,
      headers,
      context: {
        topic,
        partition: int(ours[CONNECT_HEADERS.partition]),
        offset: ours[CONNECT_HEADERS.offset] ?? '',
        timestamp: int(ours[CDC_HEADERS.timestamp]),
        stage,
        sink: ours[CDC_HEADERS.sink],
        table: ours[CDC_HEADERS.table],
        errorClass: ours[CONNECT_HEADERS.exceptionClass] ?? '',
        errorCode: ours[CDC_HEADERS.code] ?? '',
        errorMessage: ours[CONNECT_HEADERS.message] ?? '',
        errorStack: ours[CONNECT_HEADERS.stacktrace],
        attempts: int(ours[CDC_HEADERS.attempts], 1),
        firstFailureAt: int(ours[CDC_HEADERS.firstFailure]),
        lastFailureAt: int(ours[CDC_HEADERS.lastFailure]),
      },
    },
  };
}
