import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createDecoder, type Decoder, type DecoderOptions } from '../decode/debezium.ts';
import { describeJsonError, objectMemberSpans, type MemberSpan } from '../decode/json-scan.ts';
import { errorMessage } from '../errors.ts';
import type { DecodedRecord, RawRecord } from '../model/change-event.ts';
import { encodePosition } from '../model/position.ts';
import { stringifyKeepingDigits } from '../model/raw-json.ts';
import { eventJsonReplacer } from '../model/serialize.ts';

/**
 * `cdc-router decode`: shows what the router makes of Kafka records, one JSON line in, one out.
 *
 * Input lines: {"key": <key JSON or null>, "value": <value JSON or null>, "topic"?, "partition"?,
 * "offset"?, "timestamp"?}; defaults: topic 'decode', partition 0, offset = the line's index from 0.
 * The decoder gets the key's and value's text exactly as written on the line (not re-serialized), so
 * what it sees matches the Kafka bytes, large integers included.
 *
 * Output lines:
 *   {"op","table","key","before","after","position","ts_ms"}  changes (table id, encoded position)
 *   {"op":"tombstone","table","key"}
 *   {"op":"heartbeat","ts_ms"}
 *   {"op":"transaction","status","id","event_count"}
 * An unchanged TOAST column prints as {"$unavailable":true}, never as a string a column could hold.
 * Absent values (ts_ms, event_count, a tombstone's table) print as null.
 *
 * A bad line prints `line N: <problem>` (N from 1) to `err` and decoding goes on; blank lines are
 * skipped. Resolves to 1 when any line failed, else 0.
 */

const DEFAULT_TOPIC = 'decode';
const MEMBERS = new Set(['key', 'value', 'topic', 'partition', 'offset', 'timestamp']);

class LineProblem extends Error {}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rawBytes(line: string, span: MemberSpan | undefined): Buffer | null {
  if (!span) return null;
  const text = line.slice(span.start, span.end);
  return text === 'null' ? null : Buffer.from(text, 'utf8');
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function recordOf(line: string, index: number): RawRecord {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch {
    throw new LineProblem(`not valid JSON: ${describeJsonError(line)}`);
  }
  if (!isObject(doc)) throw new LineProblem('expected a JSON object {"key", "value", "topic"?, "partition"?, "offset"?}');
  for (const k in doc) {
    if (!MEMBERS.has(k)) throw new LineProblem(`unknown member "${k}" (expected ${[...MEMBERS].join(', ')})`);
  }
  const spans = objectMemberSpans(line);
  if (!spans) throw new LineProblem('could not read the line as a JSON object');

  const { topic = DEFAULT_TOPIC, partition = 0, offset = index, timestamp = 0 } = doc;
  if (typeof topic !== 'string' || topic === '') throw new LineProblem('"topic" must be a non-empty string');
  if (!isCount(partition)) throw new LineProblem('"partition" must be a non-negative integer');
  const offsetText = isCount(offset) ? `${offset}` : typeof offset === 'string' && /^\d+$/.test(offset) ? offset : undefined;
  if (offsetText === undefined) throw new LineProblem('"offset" must be a non-negative integer (number or string)');
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp)) throw new LineProblem('"timestamp" must be a number');

  return {
    topic,
    partition,
    offset: offsetText,
    timestamp,
    key: rawBytes(line, spans.get('key')),
    value: rawBytes(line, spans.get('value')),
    headers: {},
  };
}

function describe(decoded: DecodedRecord): unknown {
  switch (decoded.kind) {
    case 'change':
      return {
        op: decoded.op,
        table: decoded.table.id,
        key: decoded.key,
        before: decoded.before,
        after: decoded.after,
        position: encodePosition(decoded.position),
        ts_ms: decoded.tsMs ?? null,
      };
    case 'tombstone':
      return { op: 'tombstone', table: decoded.table?.id ?? null, key: decoded.key };
    case 'heartbeat':
      return { op: 'heartbeat', ts_ms: decoded.tsMs ?? null };
    case 'transaction':
      return { op: 'transaction', status: decoded.status, id: decoded.id, event_count: decoded.eventCount ?? null };
  }
}

function decodeLine(decoder: Decoder, line: string, index: number): string {
  return stringifyKeepingDigits(describe(decoder.decode(recordOf(line, index))), eventJsonReplacer);
}

async function write(stream: NodeJS.WritableStream, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream, 'drain');
}

export async function runDecode(
  input: NodeJS.ReadableStream,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
  options?: DecoderOptions,
): Promise<number> {
  const decoder = createDecoder(options);
  const lines = createInterface({ input, crlfDelay: Infinity });
  let index = -1;
  let failed = 0;
  for await (const line of lines) {
    index++;
    if (line.trim() === '') continue;
    let output: string;
    try {
      output = decodeLine(decoder, line, index);
    } catch (e) {
      failed++;
      await write(err, `line ${index + 1}: ${errorMessage(e)}\n`);
      continue;
    }
    await write(out, `${output}\n`);
  }
  return failed > 0 ? 1 : 0;
}
