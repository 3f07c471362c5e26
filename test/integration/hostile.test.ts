import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IHeaders } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CDC_HEADERS, CONNECT_HEADERS } from '../../src/dlq/kafka-headers.ts';
import { envelope, type RowOf } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, testKafka, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import {
  chaosSeed,
  killAll,
  seededRandom,
  startRouter,
  tail,
  waitOrExplain,
  writeRouterConfig,
  type Random,
} from '../support/router-process.ts';
import { canonical, openStores, PG_URL, REDIS_URL, type Stores } from '../support/stores.ts';

/**
 * 10,000 malformed or hostile records, interleaved with valid ones over six partitions of two
 * topics, into a router process (file sink, PostgreSQL, Redis) with a Kafka dead-letter queue.
 * Every bad record must land in the queue exactly once (once per sink that refuses it) with the
 * reason its kind calls for, and every valid record around them must be written; the process must
 * stay up and keep committing. Nothing is killed here, so no entry may be stored twice.
 */

const SEED = chaosSeed(0x5eed_4057);
const HOSTILE = 10_000;
const MB = 1_000_000;

type Table = 'items' | 'accounts';
const PARTITIONS: Record<Table, number> = { items: 4, accounts: 2 };

type SinkName = 'out' | 'pg' | 'cache';
const SINKS: readonly SinkName[] = ['out', 'pg', 'cache'];

interface Refusal {
  readonly sink: SinkName;
  readonly code: string;
  readonly message: RegExp;
}

/** What must become of a record of a kind. */
type Outcome =
  /** Written by every sink (it is odd, not wrong). */
  | { readonly kind: 'written' }
  /** Dead-lettered before any sink saw it. */
  | {
      readonly kind: 'dead';
      readonly stage: 'decode' | 'route';
      readonly code: string;
      readonly message: RegExp;
      readonly connectStage: 'KEY_CONVERTER' | 'VALUE_CONVERTER' | 'TRANSFORMATION';
    }
  /** Decoded, but refused for good by these sinks (one entry each); the other sinks write it. */
  | { readonly kind: 'refused'; readonly by: readonly Refusal[] };

interface Produced {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** The row a record that decodes leaves in the stores that write it. */
  readonly row?: RowOf;
}

interface Ctx {
  /** A key id no other record uses. */
  readonly id: number;
  readonly lsn: number;
  readonly r: Random;
  readonly prefix: string;
}

interface Kind {
  readonly name: string;
  readonly table: Table;
  /** Share of the 10,000 (weights are normalised), or an exact count for the heavy kinds. */
  readonly weight?: number;
  readonly count?: number;
  /** Sent one per request: larger than a batch may be. */
  readonly huge?: boolean;
  readonly outcome: Outcome;
  make(c: Ctx): Produced;
}

const b = (s: string | null): Buffer | null => (s === null ? null : Buffer.from(s, 'utf8'));

function itemRow(id: number, version: number, r: Random): RowOf {
  return {
    id,
    name: `item ${id} v${version}`,
    qty: r.int(0, 10_000),
    active: r.next() < 0.5,
    attrs: { color: r.pick(['red', 'green', 'blue']), size: r.int(1, 50) },
  };
}

function accountRow(id: number, version: number, r: Random): RowOf {
  return { id, owner: `owner ${id} v${version}`, balance: r.int(-1_000_000, 1_000_000), vip: r.next() < 0.2 };
}

function item(c: Ctx, row: RowOf = itemRow(c.id, 0, c.r), op: 'c' | 'u' = 'c') {
  const env = envelope({ op, table: 'items', key: { id: c.id }, after: row, before: op === 'u' ? { id: c.id } : null, lsn: c.lsn, prefix: c.prefix });
  return { key: env.key, value: env.value, body: JSON.parse(env.value) as Record<string, unknown> };
}

function account(c: Ctx, row: RowOf = accountRow(c.id, 0, c.r)) {
  const env = envelope({ op: 'c', table: 'accounts', key: { id: c.id }, after: row, lsn: c.lsn, prefix: c.prefix, withSchema: true });
  return { key: env.key, value: env.value, doc: JSON.parse(env.value) as { schema: SchemaNode; payload: Record<string, unknown> } };
}

interface SchemaNode {
  type: string;
  field?: string;
  name?: string;
  parameters?: Record<string, string>;
  fields?: SchemaNode[];
}

/** The `after` struct's schema of a column, to make the schema block lie about it. */
function afterField(doc: { schema: SchemaNode }, column: string): SchemaNode {
  const after = doc.schema.fields!.find((f) => f.field === 'after')!;
  return after.fields!.find((f) => f.field === column)!;
}

/** A valid items envelope, edited. */
function editedItem(c: Ctx, edit: (body: Record<string, unknown>) => void): Produced {
  const { key, body } = item(c);
  edit(body);
  const value = JSON.stringify(body);
  // The row as the decoder sees it (a number beyond a double's range is Infinity there too).
  const after = (JSON.parse(value) as { after?: unknown }).after;
  return { key: b(key), value: b(value), row: typeof after === 'object' && after !== null && !Array.isArray(after) ? (after as RowOf) : undefined };
}

const refusedBy = (...by: Refusal[]): Outcome => ({ kind: 'refused', by });

const decode = (code: string, message: RegExp, connectStage: 'KEY_CONVERTER' | 'VALUE_CONVERTER' = 'VALUE_CONVERTER'): Outcome => ({
  kind: 'dead',
  stage: 'decode',
  code,
  message,
  connectStage,
});

const KINDS: readonly Kind[] = [
  {
    name: 'not JSON at all',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: unexpected character '<' at position 0$/),
    make: (c) => ({ key: b(`{"id":${c.id}}`), value: b(`<html><body>oops ${c.id}</body></html>`) }),
  },
  {
    name: 'truncated JSON',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: .+ at position \d+$/),
    make: (c) => {
      const { key, value } = item(c);
      return { key: b(key), value: b(value.slice(0, c.r.int(1, value.length - 1))) };
    },
  },
  {
    name: 'an array, not an envelope',
    table: 'items',
    outcome: decode('NOT_AN_ENVELOPE', /: value is an array, not a Debezium envelope object$/),
    make: (c) => ({ key: b(`{"id":${c.id}}`), value: b('[{"op":"c"},1,2]') }),
  },
  {
    name: 'a scalar, not an envelope',
    table: 'items',
    outcome: decode('NOT_AN_ENVELOPE', /: value is a (number|string|boolean), not a Debezium envelope object$/),
    make: (c) => ({ key: b(`{"id":${c.id}}`), value: b(c.r.pick(['42', '"op"', 'true', '-1.5e3'])) }),
  },
  {
    name: 'unknown op',
    table: 'items',
    outcome: decode('UNKNOWN_OP', /: unknown op "(x|D|update|)", expected one of c, u, d, r, t$/),
    make: (c) => editedItem(c, (e) => (e['op'] = c.r.pick(['x', 'D', 'update', '']))),
  },
  {
    name: 'op of the wrong type',
    table: 'items',
    outcome: decode('UNKNOWN_OP', /: unknown op (7|\{\}|\["c"\]|true), expected/),
    make: (c) => editedItem(c, (e) => (e['op'] = c.r.pick([7, {}, ['c'], true]))),
  },
  {
    name: 'no op',
    table: 'items',
    outcome: decode('MISSING_OP', /: value has no "op": not a Debezium change envelope/),
    make: (c) => editedItem(c, (e) => delete e['op']),
  },
  {
    name: 'no source block',
    table: 'items',
    outcome: decode('MISSING_SOURCE', /: op "c" change has no "source" block$/),
    make: (c) => editedItem(c, (e) => (e['source'] = c.r.pick([undefined, null, 'src', [1]]))),
  },
  {
    name: 'no table in the source',
    table: 'items',
    outcome: decode('MISSING_TABLE', /: source block has no "table"$/),
    make: (c) => editedItem(c, (e) => ((e['source'] as Record<string, unknown>)['table'] = c.r.pick([undefined, '', 5]))),
  },
  {
    name: 'create without after',
    table: 'items',
    outcome: decode('MISSING_AFTER', /: op "c" change has no "after" row$/),
    make: (c) => editedItem(c, (e) => (e['after'] = null)),
  },
  {
    name: 'after of the wrong type',
    table: 'items',
    outcome: decode('BAD_ROW', /: "after" is (a string|a number|an array), expected an object or null$/),
    make: (c) => editedItem(c, (e) => (e['after'] = c.r.pick(['row', 12, [1, 2]]))),
  },
  {
    name: 'null key',
    table: 'items',
    outcome: decode('MISSING_KEY', /: op "c" change has a null Kafka key; sinks need the row's key/, 'KEY_CONVERTER'),
    make: (c) => ({ key: null, value: b(item(c).value) }),
  },
  {
    name: 'empty key',
    table: 'items',
    outcome: decode('MISSING_KEY', /: op "c" change has an empty key/, 'KEY_CONVERTER'),
    make: (c) => ({ key: b('{}'), value: b(item(c).value) }),
  },
  {
    name: 'key not an object',
    table: 'items',
    outcome: decode('BAD_KEY', /: key is (an array|a number|a string|a boolean), expected an object of key columns$/, 'KEY_CONVERTER'),
    make: (c) => ({ key: b(c.r.pick([`[${c.id}]`, `${c.id}`, `"${c.id}"`, 'true'])), value: b(item(c).value) }),
  },
  {
    name: 'key not JSON',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: key is not valid JSON: /, 'KEY_CONVERTER'),
    make: (c) => ({ key: b(`{"id":${c.id}`), value: b(item(c).value) }),
  },
  {
    name: 'raw NUL byte inside a string',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: control character in string at position \d+$/),
    make: (c) => {
      const { key, value } = item(c);
      return { key: b(key), value: b(value.replace(`"item ${c.id} v0"`, `"item\u0000${c.id}"`)) };
    },
  },
  {
    name: 'NUL bytes after the JSON',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: unexpected text after the JSON value at position \d+$/),
    make: (c) => {
      const { key, value } = item(c);
      return { key: b(key), value: Buffer.concat([Buffer.from(value), Buffer.alloc(c.r.int(1, 16))]) };
    },
  },
  {
    name: 'invalid UTF-8',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: value is not valid UTF-8/),
    make: (c) => {
      const { key, value } = item(c);
      const [head, rest] = value.split(`item ${c.id} v0`) as [string, string];
      const bad = c.r.pick([[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]]);
      return { key: b(key), value: Buffer.concat([Buffer.from(`${head}item `), Buffer.from(bad), Buffer.from(rest)]) };
    },
  },
  {
    name: 'byte order mark',
    table: 'items',
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: unexpected character U\+feff at position 0$/),
    make: (c) => {
      const { key, value } = item(c);
      return { key: b(key), value: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(value)]) };
    },
  },
  {
    name: 'nested 100,000 deep, never closed',
    table: 'items',
    count: 20,
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: nested too deeply to locate the error/),
    make: (c) => ({ key: b(`{"id":${c.id}}`), value: b(`{"op":"c","after":${'['.repeat(100_000)}`) }),
  },
  {
    name: '~1 MB of truncated JSON',
    table: 'items',
    count: 6,
    huge: true,
    outcome: decode('MALFORMED_JSON', /: value is not valid JSON: unterminated string at position \d+$/),
    make: (c) => {
      const { key, value } = item(c, { ...itemRow(c.id, 0, c.r), name: 'x'.repeat(MB) });
      return { key: b(key), value: b(value.slice(0, value.indexOf('xxx') + c.r.int(1, MB - 10))) };
    },
  },
  {
    name: 'schema says Date, payload is a string',
    table: 'accounts',
    outcome: decode('BAD_FIELD', /: column after\.balance: expected an integer count of days, got "yesterday"$/),
    make: (c) => {
      const { key, doc } = account(c);
      Object.assign(afterField(doc, 'balance'), { type: 'int32', name: 'io.debezium.time.Date' });
      doc.payload['after'] = { ...(doc.payload['after'] as RowOf), balance: 'yesterday' };
      return { key: b(key), value: b(JSON.stringify(doc)) };
    },
  },
  {
    name: 'schema says Decimal, payload is not base64',
    table: 'accounts',
    outcome: decode('BAD_FIELD', /: column after\.balance: expected base64 decimal bytes, got "€€€ 12,5"$/),
    make: (c) => {
      const { key, doc } = account(c);
      Object.assign(afterField(doc, 'balance'), { type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } });
      doc.payload['after'] = { ...(doc.payload['after'] as RowOf), balance: '€€€ 12,5' };
      return { key: b(key), value: b(JSON.stringify(doc)) };
    },
  },
  {
    name: 'schema says Json, payload is not JSON',
    table: 'accounts',
    outcome: decode('BAD_FIELD', /: column after\.owner: io\.debezium\.data\.Json value is not valid JSON: /),
    make: (c) => {
      const { key, doc } = account(c);
      Object.assign(afterField(doc, 'owner'), { name: 'io.debezium.data.Json' });
      doc.payload['after'] = { ...(doc.payload['after'] as RowOf), owner: '{"unterminated": ' };
      return { key: b(key), value: b(JSON.stringify(doc)) };
    },
  },
  {
    name: 'malformed source.sequence',
    table: 'items',
    outcome: decode('BAD_SOURCE', /: source\.sequence ".+" is not \["<lastCommitLsn>","<lsn>"\]$/),
    make: (c) => editedItem(c, (e) => ((e['source'] as Record<string, unknown>)['sequence'] = c.r.pick(['garbage', '[1,2,3]', '["a","b"]']))),
  },
  {
    name: 'LSN beyond 64 bits',
    table: 'items',
    outcome: decode('BAD_SOURCE', /: source position 123456789012345678901234567890 does not fit 64 bits$/),
    make: (c) =>
      editedItem(c, (e) => {
        const source = e['source'] as Record<string, unknown>;
        source['lsn'] = '123456789012345678901234567890';
        source['sequence'] = null;
      }),
  },
  {
    // JSON.parse makes it Infinity, as Jackson does in Kafka Connect: PostgreSQL refuses it for a
    // bigint column; the JSON sinks (file, Redis) can only write null (see the report).
    name: 'number beyond the range of a double',
    table: 'items',
    outcome: refusedBy({ sink: 'pg', code: 'PG_22P02', message: /: invalid input syntax for type bigint: "-?Infinity" \(SQLSTATE 22P02\)$/ }),
    make: (c) => {
      const { key, value } = item(c);
      const edited = value.replace(/"qty":\d+/, `"qty":${c.r.pick(['1e400', '-9'.padEnd(420, '9'), '1' + '0'.repeat(400)])}`);
      return { key: b(key), value: b(edited), row: (JSON.parse(edited) as { after: RowOf }).after };
    },
  },
  {
    name: 'a table no route knows (with SQL in its name)',
    table: 'items',
    outcome: { kind: 'dead', stage: 'route', code: 'UNROUTED', message: /: no route for table public\.(ghost|x"; DROP TABLE items; --)$/, connectStage: 'TRANSFORMATION' },
    make: (c) => editedItem(c, (e) => ((e['source'] as Record<string, unknown>)['table'] = c.r.pick(['ghost', 'x"; DROP TABLE items; --']))),
  },
  {
    name: 'a string where PostgreSQL has bigint',
    table: 'items',
    outcome: refusedBy({ sink: 'pg', code: 'PG_22P02', message: /key \{"id":\d+\}: invalid input syntax for type bigint: "(lots|12 apples|)" \(SQLSTATE 22P02\)$/ }),
    make: (c) => editedItem(c, (e) => ((e['after'] as RowOf)['qty'] = c.r.pick(['lots', '12 apples', '']))),
  },
  {
    name: 'a whole number beyond bigint',
    table: 'items',
    outcome: refusedBy({ sink: 'pg', code: 'PG_22003', message: /: value "-?\d+" is out of range for type bigint \(SQLSTATE 22003\)$/ }),
    make: (c) => editedItem(c, (e) => ((e['after'] as RowOf)['qty'] = c.r.pick([2 ** 63, 1e19, -1e20]))),
  },
  {
    name: 'escaped NUL in a text column',
    table: 'items',
    outcome: refusedBy({ sink: 'pg', code: 'PG_22021', message: /: invalid byte sequence for encoding "UTF8": 0x00 \(SQLSTATE 22021\)$/ }),
    make: (c) => editedItem(c, (e) => ((e['after'] as RowOf)['name'] = `nul\u0000inside ${c.id}`)),
  },
  {
    name: 'schema lies: says int64, payload is text',
    table: 'accounts',
    outcome: decode('BAD_FIELD', /: column after\.balance: expected an int64, got "a lot"$/),
    make: (c) => {
      const { key, doc } = account(c);
      doc.payload['after'] = { ...(doc.payload['after'] as RowOf), balance: 'a lot' };
      return { key: b(key), value: b(JSON.stringify(doc)) };
    },
  },
  {
    name: 'nested 100,000 deep, valid JSON',
    table: 'items',
    count: 20,
    outcome: refusedBy(
      { sink: 'out', code: 'NOT_SERIALIZABLE', message: /: sink out: table public\.items: cannot serialize the change: Maximum call stack size exceeded$/ },
      { sink: 'pg', code: 'PG_ENCODE', message: /: sink pg: cannot encode a value for .* key \{"id":\d+\}: RangeError: Maximum call stack size exceeded$/ },
      { sink: 'cache', code: 'NOT_SERIALIZABLE', message: /: cannot serialize the row: Maximum call stack size exceeded$/ },
    ),
    make: (c) => {
      const { key, value } = item(c);
      return { key: b(key), value: b(value.replace(/"attrs":\{[^}]*\}/, `"attrs":${'['.repeat(100_000)}${']'.repeat(100_000)}`)) };
    },
  },
  {
    name: '~1 MB text value',
    table: 'items',
    count: 6,
    huge: true,
    outcome: { kind: 'written' },
    make: (c) => {
      const row = { ...itemRow(c.id, 0, c.r), name: `${c.id}:`.padEnd(MB, 'y') };
      const { key, value } = item(c, row);
      return { key: b(key), value: b(value), row };
    },
  },
  {
    name: 'nested 200 deep (JSON column)',
    table: 'items',
    weight: 0.3,
    outcome: { kind: 'written' },
    make: (c) => {
      let nested: RowOf = { leaf: c.id };
      for (let i = 0; i < 200; i++) nested = { [`l${i}`]: nested };
      const row = { ...itemRow(c.id, 0, c.r), attrs: nested };
      const { key, value } = item(c, row);
      return { key: b(key), value: b(value), row };
    },
  },
  {
    name: 'SQL, quotes, emoji, RTL and line separators in values',
    table: 'items',
    outcome: { kind: 'written' },
    make: (c) => {
      const name = c.r.pick([`'); DROP TABLE items; -- ${c.id}`, `"quoted" \\ back ${c.id}`, `🦀 שלום\u2028\u2029 ${c.id}`, `{"json":"in text"} ${c.id}`]);
      const row = { ...itemRow(c.id, 0, c.r), name };
      const { key, value } = item(c, row);
      return { key: b(key), value: b(value), row };
    },
  },
];

interface Sent {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly kind: Kind | undefined;
}

interface DlqRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Record<string, string | undefined>;
}

/** Every record of a topic, as a plain consumer reads it, up to the end offsets of now. */
async function readTopic(topic: string, fixture: KafkaFixture): Promise<DlqRecord[]> {
  const ends = await fixture.endOffsets(topic);
  const remaining = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p));
  const out: DlqRecord[] = [];
  if (remaining.size === 0) return out;
  const groupId = uniqueName('hostile-dlq-reader');
  const consumer = testKafka().consumer({ groupId, maxWaitTimeInMs: 200 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) out.push({ key: m.key, value: m.value, headers: headerText(m.headers) });
        if (BigInt(batch.lastOffset()) + 1n >= (ends.get(batch.partition) ?? 0n)) remaining.delete(batch.partition);
      },
    });
    await waitUntil(() => remaining.size === 0, 60_000, `reading ${topic} to its end`);
  } finally {
    await consumer.disconnect();
    await fixture.admin.deleteGroups([groupId]).catch(() => undefined);
  }
  return out;
}

/** Header values as text; a repeated name keeps its last value (ours come after an original's). */
function headerText(headers: IHeaders | undefined): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    out[k] = last === undefined ? undefined : Buffer.isBuffer(last) ? last.toString('utf8') : String(last);
  }
  return out;
}

interface FileLine {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly after: RowOf | null;
}

async function fileLines(path: string): Promise<FileLine[]> {
  const text = await readFile(path, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as FileLine);
}

const strip = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('__cdc')));

describe('hostile records: each one dead-lettered with its reason, the service stays up', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  let dir: string;
  const id = uniqueName('hostile').replace(/-/g, '_');
  const pgSchema = `it_${id}`;
  const redisPrefix = `${id}:`;
  const prefix = id.replace(/_/g, '-');
  const topics: Record<Table, string> = { items: `${prefix}.public.items`, accounts: `${prefix}.public.accounts` };
  const dlqTopic = `${prefix}.dlq`;

  beforeAll(async () => {
    kafka = await kafkaFixture();
    stores = await openStores();
    dir = await mkdtemp(join(tmpdir(), 'cdc-hostile-'));
  });
  afterAll(async () => {
    await killAll();
    // Created here rather than by the fixture: they need a larger max.message.bytes.
    await kafka.admin.deleteTopics({ topics: [...Object.values(topics), dlqTopic] }).catch(() => undefined);
    await kafka.close();
    await stores.cleanup({ pgSchemas: [pgSchema], redisPrefixes: [redisPrefix] });
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    `dead-letters exactly the ${HOSTILE} bad records and writes every valid one around them`,
    async () => {
      console.log(`hostile.test seed ${SEED} (CDC_CHAOS_SEED=${SEED} repeats this run)`);
      const r = seededRandom(SEED);
      for (const table of ['items', 'accounts'] as const) {
        // Room for the ~1 MB records (the broker's default limit is 1 MiB per batch).
        await kafka.admin.createTopics({
          waitForLeaders: true,
          topics: [{ topic: topics[table], numPartitions: PARTITIONS[table], configEntries: [{ name: 'max.message.bytes', value: '4194304' }] }],
        });
      }

      const nextOffset = new Map<string, bigint>();
      const sent: Sent[] = [];
      /** What PostgreSQL and Redis must hold at the end, by table and key. */
      const expected: Record<'pg' | 'cache', Record<Table, Map<number, RowOf>>> = {
        pg: { items: new Map(), accounts: new Map() },
        cache: { items: new Map(), accounts: new Map() },
      };
      let lsn = 1_000;
      let nextId = 1;
      const versions: Record<Table, Map<number, number>> = { items: new Map(), accounts: new Map() };
      const validKeys: Record<Table, number[]> = { items: [], accounts: [] };
      let pending: { topic: string; partition: number; key: Buffer | null; value: Buffer | null }[] = [];

      const flush = async () => {
        const byTopic = new Map<string, { partition: number; key: Buffer | null; value: Buffer | null }[]>();
        for (const m of pending) {
          let list = byTopic.get(m.topic);
          if (!list) byTopic.set(m.topic, (list = []));
          list.push({ partition: m.partition, key: m.key, value: m.value });
        }
        pending = [];
        if (byTopic.size > 0) await kafka.producer.sendBatch({ topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      };
      const record = async (table: Table, partition: number, p: Produced, kind: Kind | undefined) => {
        const topic = topics[table];
        const tp = `${topic}/${partition}`;
        const offset = nextOffset.get(tp) ?? 0n;
        nextOffset.set(tp, offset + 1n);
        sent.push({ topic, partition, offset: offset.toString(), key: p.key, value: p.value, kind });
        if (kind?.huge) {
          // Alone: a produce request puts a partition's messages in one batch, and the topic limits batches.
          await flush();
          await kafka.producer.send({ topic, messages: [{ partition, key: p.key, value: p.value }] });
        } else {
          pending.push({ topic, partition, key: p.key, value: p.value });
          if (pending.length >= 500) await flush();
        }
      };
      /** A create for a new key, or an update of an existing one; the stores end with the last. */
      const valid = async (table: Table, fresh: boolean) => {
        const keys = validKeys[table];
        const key = fresh || keys.length === 0 ? nextId++ : r.pick(keys);
        const version = (versions[table].get(key) ?? -1) + 1;
        versions[table].set(key, version);
        if (version === 0) keys.push(key);
        const row = table === 'items' ? itemRow(key, version, r) : accountRow(key, version, r);
        const env = envelope({
          op: version === 0 ? 'c' : 'u',
          table,
          key: { id: key },
          after: row,
          before: version === 0 ? null : { id: key },
          lsn: (lsn += 8),
          prefix,
          withSchema: table === 'accounts',
        });
        expected.pg[table].set(key, row);
        expected.cache[table].set(key, row);
        await record(table, key % PARTITIONS[table], { key: b(env.key), value: b(env.value) }, undefined);
      };

      // Warm-up: valid rows only, so that PostgreSQL's tables take their types from valid data.
      for (let i = 0; i < 40; i++) await valid(i < 20 ? 'items' : 'accounts', true);
      await flush();

      const out = join(dir, 'out.jsonl');
      const group = uniqueName('hostile-group');
      const config = await writeRouterConfig(dir, 'hostile', {
        kafka: { brokers: [BROKER], group_id: group, topics: Object.values(topics), heartbeat_interval_ms: 1000, session_timeout_ms: 10_000 },
        sinks: {
          out: { kind: 'file', path: out, fsync: false },
          pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
          cache: { kind: 'redis', url: REDIS_URL, key_prefix: redisPrefix, mode: 'json' },
        },
        routes: [
          { table: 'public.items', sinks: SINKS },
          { table: 'public.accounts', sinks: SINKS },
        ],
        unrouted: 'fail',
        retry: { initial_ms: 50, max_ms: 500 },
        dlq: { kind: 'kafka', topic: dlqTopic, partitions: 3, topic_config: { 'max.message.bytes': '8388608' } },
        metrics: { enabled: false },
        log: { level: 'info' },
      });
      const router = startRouter(config, { name: 'hostile router' });
      const routers = () => [router];
      const committedTotal = async () => {
        let sum = 0n;
        for (const topic of Object.values(topics)) for (const v of (await kafka.committed(group, topic)).values()) if (v > 0n) sum += v;
        return sum;
      };
      const atEnd = async () => {
        for (const topic of Object.values(topics)) {
          const c = await kafka.committed(group, topic);
          // A partition nothing was produced to has nothing to commit.
          for (const [p, end] of await kafka.endOffsets(topic)) if (end > 0n && c.get(p) !== end) return false;
        }
        return true;
      };
      await waitOrExplain(atEnd, 60_000, 'the warm-up to be committed', routers);

      // The hostile mix: every kind in its share, interleaved at random with valid creates and updates.
      const fixed = KINDS.filter((k) => k.count !== undefined);
      const weighted = KINDS.filter((k) => k.count === undefined);
      const weightSum = weighted.reduce((sum, k) => sum + (k.weight ?? 1), 0);
      const left = HOSTILE - fixed.reduce((sum, k) => sum + k.count!, 0);
      const plan: Kind[] = [];
      for (const k of fixed) for (let i = 0; i < k.count!; i++) plan.push(k);
      weighted.forEach((k, i) => {
        const n = i === weighted.length - 1 ? HOSTILE - plan.length : Math.round((left * (k.weight ?? 1)) / weightSum);
        for (let j = 0; j < n; j++) plan.push(k);
      });
      for (let i = plan.length - 1; i > 0; i--) {
        const j = r.int(0, i);
        [plan[i], plan[j]] = [plan[j]!, plan[i]!];
      }
      expect(plan).toHaveLength(HOSTILE);

      const progress = new Set<bigint>();
      const watcher = setInterval(() => {
        committedTotal().then(
          (total) => progress.add(total),
          () => undefined,
        );
      }, 500);
      try {
        const t0 = Date.now();
        for (const kind of plan) {
          while (r.next() < 0.5) await valid(r.next() < 0.5 ? 'items' : 'accounts', r.next() < 0.3);
          const c: Ctx = { id: nextId++, lsn: (lsn += 8), r, prefix };
          const produced = kind.make(c);
          await record(kind.table, r.int(0, PARTITIONS[kind.table] - 1), produced, kind);
          const o = kind.outcome;
          for (const sink of ['pg', 'cache'] as const) {
            if (o.kind === 'written' || (o.kind === 'refused' && !o.by.some((x) => x.sink === sink))) {
              expected[sink][kind.table].set(c.id, produced.row!);
            }
          }
        }
        await flush();
        console.log(`hostile.test: produced ${sent.length} records (${HOSTILE} hostile) in ${Date.now() - t0} ms`);
        for (const topic of Object.values(topics)) {
          for (const [p, end] of await kafka.endOffsets(topic)) expect(end, `${topic}/${p}`).toBe(nextOffset.get(`${topic}/${p}`) ?? 0n);
        }
        const t1 = Date.now();
        await waitOrExplain(async () => router.exit() === undefined && (await atEnd()), 240_000, 'commits to reach the end offsets', routers);
        console.log(`hostile.test: committed to the end ${Date.now() - t1} ms after the last record was produced`);
      } finally {
        clearInterval(watcher);
      }
      // It stayed up the whole time and committed as it went, not once at the end.
      expect(router.exit(), tail(router)).toBeUndefined();
      expect(progress.size, 'distinct committed totals seen while it worked').toBeGreaterThan(3);
      expect(await router.terminate(), tail(router)).toEqual({ code: 0, signal: null });
      const trouble = router.logLines().filter((l) => /halted|crashed|cannot be dead-lettered/.test(l.msg ?? ''));
      expect(trouble.map((l) => l.msg), tail(router)).toEqual([]);

      // The dead-letter queue holds exactly the bad records, once per refusing sink, with the reason of their kind.
      const entries = await readTopic(dlqTopic, kafka);
      const bySource = new Map<string, DlqRecord[]>();
      for (const e of entries) {
        const k = `${e.headers[CONNECT_HEADERS.topic]}/${e.headers[CONNECT_HEADERS.partition]}/${e.headers[CONNECT_HEADERS.offset]}`;
        bySource.set(k, [...(bySource.get(k) ?? []), e]);
      }
      const problems = new Map<string, string[]>();
      const problem = (kind: string, text: string) => {
        const list = problems.get(kind) ?? [];
        if (list.length < 3) list.push(text);
        problems.set(kind, list);
      };
      const inFileExpected = new Set<string>();
      let expectedEntries = 0;
      for (const s of sent) {
        const k = `${s.topic}/${s.partition}/${s.offset}`;
        const got = bySource.get(k) ?? [];
        const outcome: Outcome = s.kind?.outcome ?? { kind: 'written' };
        const name = s.kind?.name ?? 'valid';
        const want: { stage: string; sink: string | undefined; code: string; connect: string; message: RegExp }[] =
          outcome.kind === 'written'
            ? []
            : outcome.kind === 'dead'
              ? [{ stage: outcome.stage, sink: undefined, code: outcome.code, connect: outcome.connectStage, message: outcome.message }]
              : outcome.by.map((x) => ({ stage: 'sink', sink: x.sink, code: x.code, connect: 'TASK_PUT', message: x.message }));
        if (outcome.kind === 'written' || (outcome.kind === 'refused' && !outcome.by.some((x) => x.sink === 'out'))) inFileExpected.add(k);
        expectedEntries += want.length;
        const show = (e: DlqRecord) => `${e.headers[CDC_HEADERS.code]} ${e.headers[CONNECT_HEADERS.message]?.slice(0, 300)}`;
        if (got.length !== want.length) {
          problem(name, `${k}: ${got.length} entries, expected ${want.length}: ${got.map(show).join(' | ')}`);
          continue;
        }
        for (const w of want) {
          const e = got.find((x) => x.headers[CDC_HEADERS.sink] === w.sink);
          if (!e) {
            problem(name, `${k}: no entry for sink ${w.sink}: ${got.map(show).join(' | ')}`);
            continue;
          }
          const h = e.headers;
          const seen = { stage: h[CDC_HEADERS.stage], sink: h[CDC_HEADERS.sink], code: h[CDC_HEADERS.code], connect: h[CONNECT_HEADERS.stage] };
          const message = h[CONNECT_HEADERS.message] ?? '';
          if (JSON.stringify(seen) !== JSON.stringify({ stage: w.stage, sink: w.sink, code: w.code, connect: w.connect }) || !w.message.test(message)) {
            problem(name, `${k}: ${JSON.stringify(seen)} ${message.slice(0, 300)}`);
          }
          // The original bytes, byte for byte (invalid UTF-8 and NUL bytes included).
          if (!sameBytes(e.key, s.key) || !sameBytes(e.value, s.value)) problem(name, `${k}: key or value bytes differ from the original`);
        }
      }
      expect(Object.fromEntries(problems), 'per kind: records whose dead-letter entries are missing, extra or wrong').toEqual({});
      expect(entries).toHaveLength(expectedEntries);

      // Every record that decoded reached the file sink (unless the file refused it), once; nothing else did.
      const fileKeys = (await fileLines(out)).map((l) => `${l.topic}/${l.partition}/${l.offset}`);
      expect(fileKeys.length - new Set(fileKeys).size, 'duplicate lines in the file sink').toBe(0);
      const inFile = new Set(fileKeys);
      const missing = [...inFileExpected].filter((k) => !inFile.has(k));
      expect(missing.slice(0, 10), `${missing.length} records missing from the file sink`).toEqual([]);
      expect(fileKeys).toHaveLength(inFileExpected.size);

      // PostgreSQL and Redis hold the last change of every valid key and of every odd record they accept.
      for (const table of ['items', 'accounts'] as const) {
        const pgRows = (await stores.pgRows(pgSchema, table)).map(strip);
        const redisRows = [...(await stores.redisJson(`${redisPrefix}${table}:`)).values()].map(strip);
        for (const [sink, rows] of [
          ['pg', pgRows],
          ['cache', redisRows],
        ] as const) {
          const byId = new Map(rows.map((row) => [Number(row['id']), row]));
          const want = expected[sink][table];
          const wrong = [...want].filter(([k, row]) => canonical(byId.get(k)) !== canonical(row)).map(([k]) => k);
          const example = wrong.length > 0 ? `, e.g. ${canonical(byId.get(wrong[0]!)).slice(0, 300)} instead of ${canonical(want.get(wrong[0]!)).slice(0, 300)}` : '';
          expect(wrong.slice(0, 10), `${sink} ${table}: ${wrong.length} rows differ${example}`).toEqual([]);
          expect(byId.size, `${sink} ${table}: rows`).toBe(want.size);
        }
      }
    },
    420_000,
  );
});


function sameBytes(a: Buffer | null, b: Buffer | null): boolean {
  if (a === null || b === null) return (a === null || a.length === 0) && (b === null || b.length === 0);
  return a.equals(b);
}
