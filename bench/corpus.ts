/**
 * The benchmark corpus: Debezium change events from a seeded generator, so every run (and every
 * machine) sees the same records, and the expected final state of each store is known without
 * reading the topic back: the last change per key.
 *
 * Four tables in one topic (Debezium's topic routing can merge tables so). Per event: 20% on 100 hot
 * keys per table, 45% on a new key, the rest on a random earlier key; a key that exists is updated,
 * or deleted one time in ten (the delete is followed by its tombstone, as Debezium sends it); a key
 * that does not exist is created. Half the events carry JsonConverter's schema block. The payload
 * (an event without the schema block) is about 1 KB; the schema block makes the others about 2.5 KB.
 */
import { envelope, type Json, type RowOf } from '../src/testing/envelope.ts';

/** Bump when the generator changes: the corpus topic's name carries it, so an old corpus is never reused. */
export const CORPUS_VERSION = 1;

export interface CorpusSpec {
  readonly seed: number;
  /** Kafka records, tombstones included. */
  readonly events: number;
  readonly partitions: number;
}

export const TABLES = ['customers', 'orders', 'products', 'payments'] as const;
export type TableName = (typeof TABLES)[number];
const TABLE_WEIGHTS: Readonly<Record<TableName, number>> = { customers: 0.25, orders: 0.4, products: 0.15, payments: 0.2 };

export type ColumnKind = 'int' | 'text' | 'bool';

/** Every table's columns, in row order; the key is `id`. Only `note` can be null (text either way, with or without schema). */
export const COLUMNS: Readonly<Record<TableName, readonly (readonly [string, ColumnKind])[]>> = {
  customers: [
    ['id', 'int'], ['name', 'text'], ['email', 'text'], ['country', 'text'], ['tier', 'text'], ['active', 'bool'],
    ['signup_at', 'text'], ['loyalty_points', 'int'], ['note', 'text'], ['bio', 'text'],
  ],
  orders: [
    ['id', 'int'], ['customer_id', 'int'], ['status', 'text'], ['total', 'text'], ['currency', 'text'], ['item_count', 'int'],
    ['placed_at', 'text'], ['shipped', 'bool'], ['shipping_address', 'text'], ['note', 'text'], ['comment', 'text'],
  ],
  products: [
    ['id', 'int'], ['sku', 'text'], ['title', 'text'], ['price', 'text'], ['stock', 'int'], ['category', 'text'],
    ['discontinued', 'bool'], ['updated_at', 'text'], ['note', 'text'], ['description', 'text'],
  ],
  payments: [
    ['id', 'int'], ['order_id', 'int'], ['amount', 'text'], ['method', 'text'], ['state', 'text'], ['captured_at', 'text'],
    ['attempts', 'int'], ['reference', 'text'], ['note', 'text'], ['memo', 'text'],
  ],
};

const HOT_KEYS = 100;
const HOT_SHARE = 0.2;
const NEW_SHARE = 0.45;
const DELETE_SHARE = 0.1;
const SCHEMA_SHARE = 0.5;
const FIRST_LSN = 0x1_0000_0000;
const LSN_STEP = 64;
const FIRST_TS_MS = 1_700_000_000_000;
/** Debezium's topic prefix (source.name) and the tables' schema. */
export const SOURCE_PREFIX = 'bench';
export const SOURCE_SCHEMA = 'public';

/** mulberry32: a 32-bit state, good enough for workload shapes, identical on every platform. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** FNV-1a over a string's UTF-16 units: a stable hash for partitions and per-row seeds. */
export function fnv1a(text: string, basis = 0x811c9dc5): number {
  let h = basis >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function partitionOf(table: TableName, id: number, partitions: number): number {
  return fnv1a(`${table}:${id}`) % partitions;
}

/** 64 KB of word-like text; fillers are slices of it, so a row costs no per-character randomness. */
const TEXT = (() => {
  const rand = prng(7);
  const syllables = ['lo', 're', 'm ', 'ip', 'sum', 'do', 'lor', 'sit', 'a', 'met', 'con', 'sec', 'te', 'tur', 'el', 'it'];
  let out = '';
  while (out.length < 65_536) {
    const n = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < n; i++) out += syllables[Math.floor(rand() * syllables.length)];
    out += rand() < 0.12 ? '. ' : ' ';
  }
  return out;
})();

const COUNTRIES = ['DE', 'FR', 'US', 'BR', 'JP', 'IN', 'NG', 'SE', 'ES', 'CA'];
const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

function filler(rand: () => number, min: number, max: number): string {
  const len = min + Math.floor(rand() * (max - min));
  const at = Math.floor(rand() * (TEXT.length - len));
  return TEXT.slice(at, at + len);
}

function money(rand: () => number, max: number): string {
  return `${Math.floor(rand() * max)}.${String(Math.floor(rand() * 100)).padStart(2, '0')}`;
}

function timestamp(rand: () => number, lsn: number): string {
  const ms = FIRST_TS_MS - 86_400_000 * 400 + ((lsn - FIRST_LSN) / LSN_STEP) * 997 + Math.floor(rand() * 1000);
  return new Date(ms).toISOString().replace('Z', '');
}

/**
 * The row a change of (table, id) at `lsn` carries: a pure function, so the expected state is
 * (table, id, lsn of the last change) and no row needs to be kept in memory.
 */
export function rowFor(seed: number, table: TableName, id: number, lsn: number): RowOf {
  const rand = prng(fnv1a(`${table}:${id}:${lsn}`, seed));
  const note: Json = rand() < 0.3 ? null : filler(rand, 10, 40);
  switch (table) {
    case 'customers':
      return {
        id,
        name: `Customer ${id}`,
        email: `customer${id}@example.com`,
        country: pick(rand, COUNTRIES),
        tier: pick(rand, ['bronze', 'silver', 'gold', 'platinum']),
        active: rand() < 0.9,
        signup_at: timestamp(rand, lsn),
        loyalty_points: Math.floor(rand() * 100_000),
        note,
        bio: filler(rand, 300, 700),
      };
    case 'orders':
      return {
        id,
        customer_id: 1 + Math.floor(rand() * 50_000),
        status: pick(rand, ['pending', 'paid', 'packed', 'shipped', 'delivered', 'cancelled']),
        total: money(rand, 5_000),
        currency: pick(rand, ['EUR', 'USD', 'GBP', 'JPY']),
        item_count: 1 + Math.floor(rand() * 12),
        placed_at: timestamp(rand, lsn),
        shipped: rand() < 0.5,
        shipping_address: `${1 + Math.floor(rand() * 300)} ${filler(rand, 12, 30)} street, ${pick(rand, COUNTRIES)}`,
        note,
        comment: filler(rand, 250, 600),
      };
    case 'products':
      return {
        id,
        sku: `SKU-${id.toString(36).toUpperCase().padStart(7, '0')}`,
        title: filler(rand, 20, 60),
        price: money(rand, 1_000),
        stock: Math.floor(rand() * 10_000),
        category: pick(rand, ['books', 'garden', 'kitchen', 'toys', 'tools', 'music', 'outdoor']),
        discontinued: rand() < 0.05,
        updated_at: timestamp(rand, lsn),
        note,
        description: filler(rand, 300, 700),
      };
    case 'payments':
      return {
        id,
        order_id: 1 + Math.floor(rand() * 400_000),
        amount: money(rand, 5_000),
        method: pick(rand, ['card', 'sepa', 'paypal', 'invoice']),
        state: pick(rand, ['authorized', 'captured', 'refunded', 'failed']),
        captured_at: timestamp(rand, lsn),
        attempts: 1 + Math.floor(rand() * 3),
        reference: `pay_${fnv1a(`${id}:${lsn}`).toString(16)}${fnv1a(`${lsn}:${id}`).toString(16)}`,
        note,
        memo: filler(rand, 300, 700),
      };
  }
}

export type RecordKind = 'c' | 'u' | 'd' | 'tombstone';

/** One Kafka record of the corpus, before it is serialized. */
export interface CorpusRecord {
  readonly table: TableName;
  readonly id: number;
  readonly kind: RecordKind;
  /** The change's LSN (a tombstone repeats its delete's). */
  readonly lsn: number;
  readonly partition: number;
  readonly withSchema: boolean;
}

export interface CorpusGenerator {
  /** The next record; the stream is endless, a corpus is its first `events` records. */
  next(): CorpusRecord;
  /** Live rows after the records generated so far: id -> LSN of its last change. */
  live(table: TableName): ReadonlyMap<number, number>;
}

export function createCorpusGenerator(seed: number, partitions: number): CorpusGenerator {
  const rand = prng(seed);
  const live = new Map<TableName, Map<number, number>>(TABLES.map((t) => [t, new Map()]));
  const nextId = new Map<TableName, number>(TABLES.map((t) => [t, HOT_KEYS + 1]));
  const cumulative = TABLES.map((_, i) => TABLES.slice(0, i + 1).reduce((s, t) => s + TABLE_WEIGHTS[t], 0));
  let lsn = FIRST_LSN;
  let tombstone: CorpusRecord | undefined;

  return {
    next() {
      if (tombstone) {
        const t = tombstone;
        tombstone = undefined;
        return t;
      }
      const r = rand();
      const table = TABLES[cumulative.findIndex((c) => r < c)] ?? TABLES[TABLES.length - 1]!;
      const rows = live.get(table)!;
      const k = rand();
      let id: number;
      if (k < HOT_SHARE) id = 1 + Math.floor(rand() * HOT_KEYS);
      else if (k < HOT_SHARE + NEW_SHARE) {
        id = nextId.get(table)!;
        nextId.set(table, id + 1);
      } else id = 1 + Math.floor(rand() * (nextId.get(table)! - 1));
      lsn += LSN_STEP;
      const kind: RecordKind = rows.has(id) ? (rand() < DELETE_SHARE ? 'd' : 'u') : 'c';
      const withSchema = rand() < SCHEMA_SHARE;
      const record: CorpusRecord = { table, id, kind, lsn, partition: partitionOf(table, id, partitions), withSchema };
      if (kind === 'd') {
        rows.delete(id);
        tombstone = { ...record, kind: 'tombstone' };
      } else rows.set(id, lsn);
      return record;
    },
    live: (table) => live.get(table)!,
  };
}

/** The Kafka key and value of a record, as Debezium's JsonConverter writes them (value null: tombstone). */
export function serialize(seed: number, record: CorpusRecord): { key: string; value: string | null } {
  const key = { id: record.id };
  const op = record.kind === 'tombstone' ? 'd' : record.kind;
  const env = envelope({
    op,
    schema: SOURCE_SCHEMA,
    table: record.table,
    key,
    before: op === 'd' ? key : null,
    after: op === 'd' ? null : rowFor(seed, record.table, record.id, record.lsn),
    lsn: record.lsn,
    txId: 1_000 + Math.floor((record.lsn - FIRST_LSN) / (LSN_STEP * 4)),
    tsMs: FIRST_TS_MS + (record.lsn - FIRST_LSN) / LSN_STEP,
    withSchema: record.withSchema,
    prefix: SOURCE_PREFIX,
  });
  return record.kind === 'tombstone' ? { key: env.key, value: null } : env;
}

/** The topic name says everything that determines its content, so a corpus is reused only when identical. */
export function corpusTopic(spec: CorpusSpec): string {
  return `cdc-bench.corpus.v${CORPUS_VERSION}.s${spec.seed}.p${spec.partitions}.n${spec.events}`;
}

export interface CorpusSummary {
  readonly records: number;
  readonly ops: Readonly<Record<RecordKind, number>>;
  readonly withSchema: number;
  readonly tables: Readonly<Record<string, number>>;
  readonly avgValueBytes: number;
  readonly avgValueBytesWithSchema: number;
  readonly avgValueBytesWithoutSchema: number;
  readonly liveRows: number;
}

/** The expected final state (live rows per table, id -> LSN) and a description of the corpus. */
export interface CorpusExpectation {
  readonly live: ReadonlyMap<TableName, ReadonlyMap<number, number>>;
  readonly summary: CorpusSummary;
}

/**
 * Runs the generator over the corpus: what the stores must hold at the end, and the corpus's mix.
 * Value sizes are measured on every `sizeSampleEvery`-th record (serializing them all costs seconds).
 */
export function expectCorpus(spec: CorpusSpec, sizeSampleEvery = 10): CorpusExpectation {
  const gen = createCorpusGenerator(spec.seed, spec.partitions);
  const ops: Record<RecordKind, number> = { c: 0, u: 0, d: 0, tombstone: 0 };
  const tables: Record<string, number> = {};
  let withSchema = 0;
  const bytes = { with: 0, withN: 0, without: 0, withoutN: 0 };
  for (let i = 0; i < spec.events; i++) {
    const r = gen.next();
    ops[r.kind]++;
    tables[r.table] = (tables[r.table] ?? 0) + 1;
    if (r.kind === 'tombstone') continue;
    if (r.withSchema) withSchema++;
    if (i % sizeSampleEvery === 0) {
      const n = Buffer.byteLength(serialize(spec.seed, r).value ?? '');
      if (r.withSchema) {
        bytes.with += n;
        bytes.withN++;
      } else {
        bytes.without += n;
        bytes.withoutN++;
      }
    }
  }
  const live = new Map(TABLES.map((t) => [t, new Map(gen.live(t))] as const));
  const avg = (sum: number, n: number) => (n === 0 ? 0 : Math.round(sum / n));
  const changes = spec.events - ops.tombstone;
  return {
    live,
    summary: {
      records: spec.events,
      ops,
      withSchema,
      tables,
      avgValueBytes: Math.round(
        (avg(bytes.with, bytes.withN) * withSchema + avg(bytes.without, bytes.withoutN) * (changes - withSchema)) / spec.events,
      ),
      avgValueBytesWithSchema: avg(bytes.with, bytes.withN),
      avgValueBytesWithoutSchema: avg(bytes.without, bytes.withoutN),
      liveRows: [...live.values()].reduce((n, m) => n + m.size, 0),
    },
  };
}
