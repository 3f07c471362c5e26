import { isUtf8 } from 'node:buffer';
import { DecodeError, type RecordCoordinates } from '../errors.ts';
import { FieldProblem, type CompiledSchema } from './connect-schema.ts';
import { describeJsonError, jsonValueEnd } from './json-scan.ts';

/**
 * Parses JsonConverter output (`{"schema":S,"payload":P}` or a bare payload) and compiles its schema,
 * skipping both steps for schemas already seen.
 *
 * Why not a cache keyed by the parsed schema: parsing the schema block is itself most of the cost
 * (it is often several times the size of the row), and any key derived from the parsed object
 * (JSON text, name + version + field count…) is either slow or unsound: ALTER COLUMN changes a
 * column's type without changing the envelope's name, version or field count. Instead the cache
 * keeps, per topic, the exact bytes `{"schema":S,"payload":` of recent records. A record starting
 * with the same bytes has the same schema (S is a complete JSON value, so the text fixes it): one
 * memcmp, then only P is parsed. JsonConverter writes compact JSON with `schema` first, so every
 * record of a topic takes this path after the first of each schema version. Anything else
 * (other layouts, whitespace, a failed fast parse) takes the full path, which is always correct.
 */

export interface ParsedJson {
  /** The payload, or the whole document when it has no schema/payload wrapper. */
  readonly body: unknown;
  /** Undefined when the document carries no schema (schemas.enable=false, or a null schema). */
  readonly schema: CompiledSchema | undefined;
}

interface Entry {
  readonly prefix: Buffer;
  readonly schema: CompiledSchema | undefined;
}

const HEAD = '{"schema":';
const JOINT = ',"payload":';
/** Schemas kept per topic: enough for a schema change seen in partitions at different points. */
const ENTRIES_PER_TOPIC = 4;

/** Only the coordinates, whatever else the caller's object carries (the Kafka timestamp…). */
export function coordinatesOf(at: RecordCoordinates): RecordCoordinates {
  return { topic: at.topic, partition: at.partition, offset: at.offset };
}

function isWrapped(doc: unknown): doc is { schema: unknown; payload: unknown } {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false;
  if (!Object.hasOwn(doc, 'schema') || !Object.hasOwn(doc, 'payload')) return false;
  let members = 0;
  for (const _ in doc) members++;
  const schema = (doc as { schema: unknown }).schema;
  return members === 2 && typeof schema === 'object' && !Array.isArray(schema);
}

/** Index of the closing '}' of the document (trailing whitespace skipped), or -1. */
function closingBrace(bytes: Buffer): number {
  let i = bytes.length - 1;
  while (i >= 0) {
    const b = bytes[i];
    if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) i--;
    else return b === 0x7d ? i : -1;
  }
  return -1;
}

export class SchemaCache {
  private readonly byTopic = new Map<string, Entry[]>();
  private readonly role: 'key' | 'value';
  private readonly compile: (schema: unknown) => CompiledSchema;

  constructor(role: 'key' | 'value', compile: (schema: unknown) => CompiledSchema) {
    this.role = role;
    this.compile = compile;
  }

  /**
   * `exact`: quote wide temporal integers even if the schema was not yet known to need it (the
   * retry after a NeedExactIntegers, for records that do not take the cached path).
   */
  parse(bytes: Buffer, topic: string, at: RecordCoordinates, exact: boolean): ParsedJson {
    // JSON is UTF-8 (RFC 8259). Decoding would silently turn bad bytes into U+FFFD and write that.
    if (!isUtf8(bytes)) {
      throw new DecodeError(`${this.role} is not valid UTF-8`, { code: 'MALFORMED_JSON', at: coordinatesOf(at) });
    }
    const entries = this.byTopic.get(topic);
    if (entries) {
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        const n = entry.prefix.length;
        if (bytes.length <= n || bytes.compare(entry.prefix, 0, n, 0, n) !== 0) continue;
        const end = closingBrace(bytes);
        if (end > n) {
          let text = bytes.toString('utf8', n, end);
          if (entry.schema && (exact || entry.schema.exact.value)) text = entry.schema.quoteWideIntegers(text);
          try {
            const body: unknown = JSON.parse(text);
            if (i > 0) {
              entries.splice(i, 1);
              entries.unshift(entry);
            }
            return { body, schema: entry.schema };
          } catch {
            // Something follows the payload, or the record is malformed: the full path decides.
          }
        }
        break;
      }
    }
    return this.parseFully(bytes, topic, at, exact);
  }

  private parseFully(bytes: Buffer, topic: string, at: RecordCoordinates, exact: boolean): ParsedJson {
    const text = bytes.toString('utf8');
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (cause) {
      throw new DecodeError(`${this.role} is not valid JSON: ${describeJsonError(text)}`, {
        code: 'MALFORMED_JSON',
        at: coordinatesOf(at),
        cause,
      });
    }
    if (!isWrapped(doc)) return { body: doc, schema: undefined };
    if (doc.schema === null) {
      this.remember(bytes, text, topic, undefined);
      return { body: doc.payload, schema: undefined };
    }

    let schema: CompiledSchema;
    try {
      schema = this.compile(doc.schema);
    } catch (e) {
      if (!(e instanceof FieldProblem)) throw e;
      throw new DecodeError(`${this.role} schema of column ${e.path}: ${e.detail}`, { code: 'BAD_SCHEMA', at: coordinatesOf(at), cause: e });
    }
    this.remember(bytes, text, topic, schema);
    if (exact) {
      schema.exact.value = true;
      return { body: (JSON.parse(schema.quoteWideIntegers(text)) as { payload: unknown }).payload, schema };
    }
    return { body: doc.payload, schema };
  }

  private remember(bytes: Buffer, text: string, topic: string, schema: CompiledSchema | undefined): void {
    if (!text.startsWith(HEAD)) return;
    const end = jsonValueEnd(text, HEAD.length);
    if (end < 0 || !text.startsWith(JOINT, end)) return;
    const prefix = Buffer.from(text.slice(0, end + JOINT.length), 'utf8');
    // Invalid UTF-8 in the record would not survive the round trip through a string.
    if (bytes.length <= prefix.length || bytes.compare(prefix, 0, prefix.length, 0, prefix.length) !== 0) return;
    let entries = this.byTopic.get(topic);
    if (!entries) {
      entries = [];
      this.byTopic.set(topic, entries);
    }
    entries.unshift({ prefix, schema });
    if (entries.length > ENTRIES_PER_TOPIC) entries.length = ENTRIES_PER_TOPIC;
  }
}
