import { describe, expect, it } from 'vitest';
import type { DeadLetter } from '../../src/dlq/dead-letter-queue.ts';
import {
  CDC_HEADERS,
  CONNECT_HEADERS,
  STATUS_HEADER,
  connectStage,
  entryHeaders,
  markerHeaders,
  parseRecord,
  type KafkaHeaders,
} from '../../src/dlq/kafka-headers.ts';

/** What a kafkajs consumer hands back for produced headers: Buffers, arrays for repeated names. */
function consumed(headers: KafkaHeaders): Record<string, Buffer | Buffer[] | null> {
  const toBuf = (v: Buffer | string) => (Buffer.isBuffer(v) ? v : Buffer.from(v));
  return Object.fromEntries(
    Object.entries(headers).map(([k, v]) => [k, v === undefined ? null : Array.isArray(v) ? v.map(toBuf) : toBuf(v)]),
  );
}

const binary = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x7b]);

const letter: DeadLetter = {
  key: Buffer.from('{"id":7}'),
  value: binary,
  headers: {
    'trace-id': Buffer.from('abc'),
    'bin': Buffer.from([0xc3, 0x28]),
    // An original header that carries one of our names survives next to ours.
    [CONNECT_HEADERS.topic]: Buffer.from('upstream-dlq'),
  },
  context: {
    topic: 'shop.public.items',
    partition: 2,
    offset: '41',
    timestamp: 1_700_000_000_123,
    stage: 'sink',
    sink: 'pg',
    table: 'public.items',
    errorClass: 'SinkError',
    errorCode: '23505',
    errorMessage: 'sink pg: duplicate key',
    errorStack: 'SinkError: sink pg: duplicate key\n    at write (pg.ts:1:1)',
    attempts: 3,
    firstFailureAt: 1_700_000_001_000,
    lastFailureAt: 1_700_000_002_000,
  },
};

describe('Kafka dead-letter headers', () => {
  it('round-trips the context and the original headers byte for byte', () => {
    const headers = entryHeaders(letter, 'my-group');
    const parsed = parseRecord(letter.key, letter.value, consumed(headers));
    expect(parsed.kind).toBe('entry');
    if (parsed.kind !== 'entry') return;
    expect(parsed.letter.context).toEqual(letter.context);
    expect(Object.keys(parsed.letter.headers).sort()).toEqual(Object.keys(letter.headers).sort());
    for (const [k, v] of Object.entries(letter.headers)) expect(parsed.letter.headers[k]?.equals(v!)).toBe(true);
    expect(parsed.letter.value?.equals(binary)).toBe(true);
  });

  it("writes Kafka Connect's error headers and ours", () => {
    const h = entryHeaders(letter, 'my-group');
    expect(h[CONNECT_HEADERS.topic]).toEqual([Buffer.from('upstream-dlq'), 'shop.public.items']);
    expect(h[CONNECT_HEADERS.partition]).toBe('2');
    expect(h[CONNECT_HEADERS.offset]).toBe('41');
    expect(h[CONNECT_HEADERS.stage]).toBe('TASK_PUT');
    expect(h[CONNECT_HEADERS.exceptionClass]).toBe('SinkError');
    expect(h[CONNECT_HEADERS.className]).toBe('cdc-router.sink.pg');
    expect(h[CONNECT_HEADERS.message]).toBe('sink pg: duplicate key');
    expect(h[CONNECT_HEADERS.stacktrace]).toContain('at write');
    expect(h[CONNECT_HEADERS.connector]).toBe('my-group');
    expect(h[CDC_HEADERS.stage]).toBe('sink');
    expect(h[CDC_HEADERS.sink]).toBe('pg');
    expect(h[CDC_HEADERS.table]).toBe('public.items');
    expect(h[CDC_HEADERS.code]).toBe('23505');
    expect(h[CDC_HEADERS.attempts]).toBe('3');
    expect(h[CDC_HEADERS.firstFailure]).toBe('1700000001000');
    expect(h[CDC_HEADERS.lastFailure]).toBe('1700000002000');
  });

  it('leaves out what is unknown (a decode failure has no table and no sink)', () => {
    const h = entryHeaders({ ...letter, headers: {}, context: { ...letter.context, stage: 'decode', sink: undefined, table: undefined } }, 'g');
    expect(h[CDC_HEADERS.sink]).toBeUndefined();
    expect(h[CDC_HEADERS.table]).toBeUndefined();
    const parsed = parseRecord(null, null, consumed(h));
    expect(parsed.kind === 'entry' && parsed.letter.context.table).toBeUndefined();
    expect(parsed.kind === 'entry' && parsed.letter.key).toBeNull();
  });

  it('maps our stages onto Connect stages', () => {
    expect(connectStage('decode', 'MALFORMED_JSON', 't/0@1: value is not valid JSON: x')).toBe('VALUE_CONVERTER');
    expect(connectStage('decode', 'MALFORMED_JSON', 't/0@1: key is not valid JSON: x')).toBe('KEY_CONVERTER');
    expect(connectStage('decode', 'MISSING_KEY', 't/0@1: op "c" change has a null Kafka key')).toBe('KEY_CONVERTER');
    expect(connectStage('decode', 'UNKNOWN_OP', 't/0@1: unknown op "x"')).toBe('VALUE_CONVERTER');
    expect(connectStage('route', 'UNROUTED', '')).toBe('TRANSFORMATION');
    expect(connectStage('transform', 'TRANSFORM_FAILED', '')).toBe('TRANSFORMATION');
    expect(connectStage('sink', 'X', '')).toBe('TASK_PUT');
  });

  it('reads status markers and ignores records it did not write', () => {
    expect(parseRecord(Buffer.from('0-5'), null, consumed(markerHeaders('discarded')))).toEqual({
      kind: 'marker',
      id: '0-5',
      status: 'discarded',
    });
    expect(parseRecord(Buffer.from('0-5'), null, { [STATUS_HEADER]: Buffer.from('bogus') }).kind).toBe('foreign');
    expect(parseRecord(Buffer.from('k'), Buffer.from('v'), {}).kind).toBe('foreign');
  });
});
