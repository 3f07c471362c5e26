/**
 * The views benchmark's corpus: one Debezium PostgreSQL table, `public.orders`, as a changelog
 * (creates, updates that change the amount and sometimes move the row to another group, deletes with
 * their tombstones), seeded like bench/corpus.ts. Each row carries three group columns drawn from
 * 1k, 100k and 1M values, so one corpus serves the group-count sweep; the commit time (`source.ts_ms`)
 * advances 1 ms per record, so a 5 s window holds 5,000 records. The payload is about 0.5 KB.
 *
 * Per event: 60% a new order (create), the rest on a random earlier id: an update (one in five of
 * them moves the row to other groups), or a delete one time in eight.
 */
import { envelope, type RowOf } from '../src/testing/envelope.ts';
import { SOURCE_PREFIX, SOURCE_SCHEMA, fnv1a, prng, type CorpusSpec } from './corpus.ts';

export const VIEWS_CORPUS_VERSION = 1;
export const VIEWS_TABLE = 'orders';
/** Group columns by the number of values they take. */
export const GROUP_COLUMNS = { '1k': 'g1k', '100k': 'g100k', '1M': 'g1m' } as const;
export type GroupCount = keyof typeof GROUP_COLUMNS;
const GROUP_SIZES: Readonly<Record<GroupCount, number>> = { '1k': 1_000, '100k': 100_000, '1M': 1_000_000 };
export const STATUSES = ['pending', 'paid', 'shipped', 'delivered', 'cancelled'] as const;

const NEW_SHARE = 0.6;
const MOVE_SHARE = 0.2;
const DELETE_SHARE = 0.125;
const SCHEMA_SHARE = 0.5;
const FIRST_LSN = 0x2_0000_0000;
const LSN_STEP = 64;
export const VIEWS_FIRST_TS_MS = 1_700_000_000_000;

export type ViewsRecordKind = 'c' | 'u' | 'd' | 'tombstone';

export interface ViewsRecord {
  readonly id: number;
  readonly kind: ViewsRecordKind;
  readonly lsn: number;
  /** Changes the row's group columns (a move between groups); 0 for its creation. */
  readonly generation: number;
  readonly partition: number;
  readonly withSchema: boolean;
}

export function viewsTopic(spec: CorpusSpec): string {
  return `cdc-bench.views.v${VIEWS_CORPUS_VERSION}.s${spec.seed}.p${spec.partitions}.n${spec.events}`;
}

export interface ViewsGenerator {
  next(): ViewsRecord;
  /** Live rows after the records generated so far. */
  liveRows(): number;
}

export function createViewsGenerator(seed: number, partitions: number): ViewsGenerator {
  const rand = prng(seed ^ 0x5eed);
  // id -> generation of its group columns, for the rows that exist.
  const live = new Map<number, number>();
  let nextId = 1;
  let lsn = FIRST_LSN;
  let tombstone: ViewsRecord | undefined;
  return {
    next() {
      if (tombstone) {
        const t = tombstone;
        tombstone = undefined;
        return t;
      }
      lsn += LSN_STEP;
      const withSchema = rand() < SCHEMA_SHARE;
      const id = rand() < NEW_SHARE || nextId === 1 ? nextId++ : 1 + Math.floor(rand() * (nextId - 1));
      const partition = fnv1a(`orders:${id}`) % partitions;
      const generation = live.get(id);
      if (generation === undefined) {
        live.set(id, 0);
        return { id, kind: 'c', lsn, generation: 0, partition, withSchema };
      }
      if (rand() < DELETE_SHARE) {
        live.delete(id);
        const d: ViewsRecord = { id, kind: 'd', lsn, generation, partition, withSchema };
        tombstone = { ...d, kind: 'tombstone' };
        return d;
      }
      const moved = rand() < MOVE_SHARE ? generation + 1 : generation;
      live.set(id, moved);
      return { id, kind: 'u', lsn, generation: moved, partition, withSchema };
    },
    liveRows: () => live.size,
  };
}

const NOTE = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua ';

function orderRow(seed: number, r: ViewsRecord): RowOf {
  const rand = prng(fnv1a(`${r.id}:${r.lsn}`, seed));
  const group = (count: GroupCount) => fnv1a(`${count}:${r.id}:${r.generation}`, seed) % GROUP_SIZES[count];
  return {
    id: r.id,
    g1k: group('1k'),
    g100k: group('100k'),
    g1m: group('1M'),
    status: STATUSES[Math.floor(rand() * STATUSES.length)]!,
    total: `${Math.floor(rand() * 5_000)}.${String(Math.floor(rand() * 100)).padStart(2, '0')}`,
    item_count: 1 + Math.floor(rand() * 12),
    note: NOTE.slice(0, 40 + Math.floor(rand() * 80)),
  };
}

/** The Kafka key and value of a record, as Debezium's JsonConverter writes them (value null: tombstone). */
export function serializeViews(seed: number, r: ViewsRecord): { key: string; value: string | null } {
  const key = { id: r.id };
  const op = r.kind === 'tombstone' ? 'd' : r.kind;
  const env = envelope({
    op,
    schema: SOURCE_SCHEMA,
    table: VIEWS_TABLE,
    key,
    before: op === 'd' ? key : null,
    after: op === 'd' ? null : orderRow(seed, r),
    lsn: r.lsn,
    txId: 1_000 + Math.floor((r.lsn - FIRST_LSN) / (LSN_STEP * 4)),
    tsMs: VIEWS_FIRST_TS_MS + (r.lsn - FIRST_LSN) / LSN_STEP,
    withSchema: r.withSchema,
    prefix: SOURCE_PREFIX,
  });
  return r.kind === 'tombstone' ? { key: env.key, value: null } : env;
}

/** The corpus's records as the producer wants them, in generator order. */
export function viewsMessages(seed: number, partitions: number): () => { partition: number; key: string; value: string | null } {
  const gen = createViewsGenerator(seed, partitions);
  return () => {
    const r = gen.next();
    return { partition: r.partition, ...serializeViews(seed, r) };
  };
}

/**
 * Live rows at the end of the corpus: what a table view's groups must count together (each window
 * apart); occurrences (changes, tombstones not): what a stream view's groups count.
 */
export function expectViews(spec: CorpusSpec): { liveRows: number; records: number; occurrences: number } {
  const gen = createViewsGenerator(spec.seed, spec.partitions);
  let occurrences = 0;
  for (let i = 0; i < spec.events; i++) if (gen.next().kind !== 'tombstone') occurrences++;
  return { liveRows: gen.liveRows(), records: spec.events, occurrences };
}
