import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDlqReplay } from '../../src/cli/dlq-command.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { createDeadLetterQueue } from '../../src/dlq/create-dead-letter-queue.ts';
import type { DeadLetterEntry } from '../../src/dlq/dead-letter-queue.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { startService } from '../../src/service.ts';
import { envelope, type RowOf } from '../../src/testing/envelope.ts';
import { cli } from '../support/router-process.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { ES_URL, openStores, PG_URL, type Stores } from '../support/stores.ts';

/**
 * Records a sink refuses for good (a NOT NULL violation in PostgreSQL, text in a field Elasticsearch
 * maps as long) go to the dead-letter queue with their full context, and nothing else does; the
 * partitions go on to their end. Once the cause is fixed, `dlq replay` makes the targets what they
 * would have been without the errors, and the stale-write guard keeps an entry older than what a
 * target holds from overwriting it.
 */

const logger = createLogger({ level: 'error' });

type Table = 'items' | 'products';
type SinkName = 'pg' | 'search';

interface Produced {
  readonly table: Table;
  readonly id: number;
  readonly after: RowOf;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: string;
  readonly value: string;
  /** The sink that must refuse it, when it is one of the bad records. */
  readonly badFor: SinkName | undefined;
  /** A later change of the same key exists: replaying this one must change nothing. */
  readonly stale: boolean;
}

interface Change {
  readonly table: Table;
  readonly id: number;
  readonly after: RowOf;
  readonly badFor?: SinkName;
}

const item = (id: number, name: string | null, qty: number, badFor?: SinkName): Change => ({
  table: 'items',
  id,
  after: { id, name, qty },
  ...(badFor ? { badFor } : {}),
});
const product = (id: number, code: number | string, label: string, badFor?: SinkName): Change => ({
  table: 'products',
  id,
  after: { id, code, label },
  ...(badFor ? { badFor } : {}),
});

/** Every change a sink received, folded per key: what the sink holds when `skip` are left out. */
function fold(produced: readonly Produced[], table: Table, skip: (p: Produced) => boolean): Map<string, RowOf> {
  const rows = new Map<string, RowOf>();
  for (const p of produced) if (p.table === table && !skip(p)) rows.set(String(p.id), p.after);
  return rows;
}

const strip = (row: Readonly<Record<string, unknown>>) => Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('__cdc')));

function differences(want: ReadonlyMap<string, RowOf>, got: ReadonlyMap<string, Record<string, unknown>>): string[] {
  const problems: string[] = [];
  for (const [k, v] of want) {
    const g = got.get(k);
    if (!g) problems.push(`${k}: missing (want ${JSON.stringify(v)})`);
    else if (!isDeepStrictEqual(strip(g), v)) problems.push(`${k}: want ${JSON.stringify(v)}, got ${JSON.stringify(strip(g))}`);
  }
  for (const k of got.keys()) if (!want.has(k)) problems.push(`${k}: unexpected ${JSON.stringify(got.get(k))}`);
  return problems;
}

describe('permanent sink errors: dead-lettered with their context, replayed once fixed', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  let dir: string;
  const prefix = uniqueName('permerr');
  const id = prefix.replace(/-/g, '_');
  const pgSchema = `it_${id}`;
  const esPrefix = prefix;
  const dlqTopic = `${prefix}.dlq`;

  beforeAll(async () => {
    kafka = await kafkaFixture();
    stores = await openStores();
    dir = await mkdtemp(join(tmpdir(), 'cdc-permerr-'));
  });
  afterAll(async () => {
    await stores.cleanup({ pgSchemas: [pgSchema], esIndexPattern: `${esPrefix}-*` });
    await stores.close();
    await kafka.admin.deleteTopics({ topics: [dlqTopic] }).catch(() => undefined);
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('dead-letters exactly the refused records, then replays them into correct targets', async () => {
    const started = Date.now();
    const topics: Record<Table, string> = { items: `${prefix}.public.items`, products: `${prefix}.public.products` };
    await kafka.createTopic(topics.items, 2);
    await kafka.createTopic(topics.products, 2);

    // The targets exist before the router: a NOT NULL column some events leave null, a field mapped long some events fill with text.
    await stores.pg.query(`CREATE SCHEMA "${pgSchema}"`);
    await stores.pg.query(`CREATE TABLE "${pgSchema}".items (id bigint PRIMARY KEY, name text NOT NULL, qty bigint)`);
    await stores.pg.query(`CREATE TABLE "${pgSchema}".products (id bigint PRIMARY KEY, code jsonb, label text)`);
    const productsIndex = `${esPrefix}-products`;
    await stores.es.indices.create({
      index: productsIndex,
      settings: { number_of_replicas: 0 },
      mappings: { properties: { code: { type: 'long' }, label: { type: 'text' } } },
    });

    const produced: Produced[] = [];
    const nextOffset = new Map<string, number>();
    let lsn = 5_000;
    /** Sends changes in order, one partition per key (id % 2), and notes each record's offset. */
    async function produce(changes: readonly Change[]): Promise<void> {
      for (const table of ['items', 'products'] as const) {
        const messages = [];
        for (const c of changes.filter((x) => x.table === table)) {
          const topic = topics[table];
          const partition = c.id % 2;
          const tp = `${topic}/${partition}`;
          const offset = nextOffset.get(tp) ?? 0;
          nextOffset.set(tp, offset + 1);
          const earlier = produced.some((p) => p.table === table && p.id === c.id);
          const env = envelope({
            op: earlier ? 'u' : 'c',
            table,
            key: { id: c.id },
            before: earlier ? { id: c.id } : null,
            after: c.after,
            lsn: (lsn += 8),
            prefix,
            withSchema: table === 'items',
          });
          produced.push({ ...c, topic, partition, offset: String(offset), key: env.key, value: env.value, badFor: c.badFor, stale: false });
          messages.push({ key: env.key, value: env.value, partition });
        }
        if (messages.length > 0) await kafka.producer.send({ topic: topics[table], messages });
      }
    }
    const markStale = () => {
      produced.forEach((p, i) => {
        if (produced.slice(i + 1).some((q) => q.table === p.table && q.id === p.id)) produced[i] = { ...p, stale: true };
      });
    };

    const group = uniqueName('permerr-group');
    const document = {
      kafka: { brokers: [BROKER], group_id: group, topics: Object.values(topics) },
      sinks: {
        pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
        search: { kind: 'elasticsearch', nodes: ES_URL, index_template: `${esPrefix}-{table}` },
      },
      routes: [
        { table: 'public.items', sinks: ['pg', 'search'] },
        { table: 'public.products', sinks: ['pg', 'search'] },
      ],
      retry: { initial_ms: 50, max_ms: 1_000 },
      dlq: { kind: 'kafka', topic: dlqTopic },
      metrics: { enabled: false },
      log: { level: 'error' },
    };
    const configFile = join(dir, 'config.json');
    await writeFile(configFile, JSON.stringify(document));
    const config = await resolveConfig(document);

    const events = new RouterEvents();
    const lettered: { where: string; sink: string | undefined; stage: string }[] = [];
    const halted: string[] = [];
    events.on('record.dead-lettered', (d) => lettered.push({ where: `${d.topic}/${d.partition}@${d.offset}`, sink: d.sink, stage: d.stage }));
    events.on('partition.halted', (h) => halted.push(`${h.topic}/${h.partition}@${h.offset}: ${h.error.message}`));
    const atEnd = async () => {
      for (const topic of Object.values(topics)) {
        const end = await kafka.endOffsets(topic);
        const committed = await kafka.committed(group, topic);
        if (![...end].every(([p, e]) => committed.get(p) === e)) return false;
      }
      return true;
    };

    const service = await startService(config, { logger, events });
    try {
      // First the creates; two items without a name, two products whose code is not a number.
      await produce([
        ...Array.from({ length: 12 }, (_, i) => i + 1).map((n) =>
          n === 3 || n === 8 ? item(n, null, n, 'pg') : item(n, `item-${n} ✓`, n),
        ),
        ...Array.from({ length: 10 }, (_, i) => i + 1).map((n) =>
          n === 4 ? product(n, 'A-4', `product ${n}`, 'search') : n === 7 ? product(n, 'N/A', `product ${n}`, 'search') : product(n, n * 100, `product ${n}`),
        ),
      ]);
      await waitUntil(atEnd, 90_000, 'commits to reach the end of the creates');
      // Then updates: item 3 and product 7 get values the sinks take (newer than their dead-lettered
      // creates), item 10 loses its name and product 2 gets a text code (refused again).
      await produce([
        item(3, 'item-3 fixed', 33),
        item(5, 'item-5 ✓', 50),
        item(10, null, 10, 'pg'),
        product(7, 707, 'product 7 fixed'),
        product(2, 'B-2', 'product 2', 'search'),
        product(9, 909, 'product 9 v2'),
      ]);
      markStale();
      await waitUntil(atEnd, 90_000, 'commits to reach the end offsets');
    } finally {
      await service.stop();
    }

    // Exactly the refused records, each once, for the sink that refused it; no partition halted.
    const bad = produced.filter((p) => p.badFor !== undefined);
    expect(halted).toEqual([]);
    expect(lettered.map((l) => `${l.where} ${l.stage} ${l.sink}`).sort()).toEqual(
      bad.map((p) => `${p.topic}/${p.partition}@${p.offset} sink ${p.badFor}`).sort(),
    );

    // Everything else was written: each target holds every change but the ones it refused.
    const check = async (skip: (p: Produced, sink: SinkName) => boolean) => {
      for (const table of ['items', 'products'] as const) {
        const pgRows = new Map((await stores.pgRows(pgSchema, table)).map((r) => [String(r['id']), r]));
        expect(differences(fold(produced, table, (p) => skip(p, 'pg')), pgRows), `postgres ${table}`).toEqual([]);
        const docs = await stores.esDocs(`${esPrefix}-${table}`);
        expect(differences(fold(produced, table, (p) => skip(p, 'search')), docs), `elasticsearch ${table}`).toEqual([]);
      }
    };
    await check((p, sink) => p.badFor === sink);

    // The entries, with their full context and the original bytes.
    const dlq = createDeadLetterQueue(config, logger)!;
    let entries: DeadLetterEntry[];
    await dlq.start();
    try {
      entries = await dlq.list({ status: 'all' });
    } finally {
      await dlq.close();
    }
    expect(entries).toHaveLength(bad.length);
    const now = Date.now();
    for (const p of bad) {
      const where = `${p.topic}/${p.partition}@${p.offset}`;
      const entry = entries.find((e) => `${e.context.topic}/${e.context.partition}@${e.context.offset}` === where);
      expect(entry, where).toBeDefined();
      const c = entry!.context;
      expect(entry!.status).toBe('open');
      expect(entry!.key?.equals(Buffer.from(p.key)), `${where} key bytes`).toBe(true);
      expect(entry!.value?.equals(Buffer.from(p.value)), `${where} value bytes`).toBe(true);
      expect(c).toMatchObject({ stage: 'sink', sink: p.badFor, table: `public.${p.table}`, errorClass: 'SinkError' });
      if (p.badFor === 'pg') {
        expect(c.errorCode).toBe('PG_23502');
        expect(c.errorMessage).toMatch(/null value in column "name" of relation "items" violates not-null constraint/);
        expect(c.errorMessage).toContain(`key {"id":${p.id}}`);
      } else {
        expect(c.errorCode).toBe('ES_ITEM_400');
        expect(c.errorMessage).toMatch(/document_parsing_exception: .*failed to parse field \[code\] of type \[long\]/);
        expect(c.errorMessage).toContain(`key [${p.id}]`);
      }
      expect(c.errorStack).toContain('SinkError');
      expect(c.attempts).toBeGreaterThanOrEqual(1);
      expect(c.timestamp).toBeGreaterThanOrEqual(started - 1_000);
      expect(c.timestamp).toBeLessThanOrEqual(now);
      expect(c.firstFailureAt).toBeGreaterThanOrEqual(c.timestamp);
      expect(c.lastFailureAt).toBeGreaterThanOrEqual(c.firstFailureAt);
      expect(c.lastFailureAt).toBeLessThanOrEqual(now);
    }

    // Replaying before the cause is fixed fails again, and the entry stays open.
    const item8 = bad.find((p) => p.table === 'items' && p.id === 8)!;
    const item8Entry = entries.find((e) => e.context.topic === item8.topic && e.context.offset === item8.offset && e.context.partition === item8.partition)!;
    const io = { out: new PassThrough(), err: new PassThrough() };
    const text: Buffer[] = [];
    const errText: Buffer[] = [];
    io.out.on('data', (b: Buffer) => text.push(b));
    io.err.on('data', (b: Buffer) => errText.push(b));
    // Its logger writes to stderr at LOG_LEVEL (default warn): only errors here.
    const level = process.env['LOG_LEVEL'];
    process.env['LOG_LEVEL'] = 'error';
    const early = await runDlqReplay(item8Entry.id, { config: configFile }, io).finally(() => {
      if (level === undefined) delete process.env['LOG_LEVEL'];
      else process.env['LOG_LEVEL'] = level;
    });
    expect(early, Buffer.concat(errText).toString()).toBe(1);
    expect(Buffer.concat(text).toString()).toMatch(/failed.*PG_23502/);

    // Fix the causes: PostgreSQL accepts a missing name; Elasticsearch keeps a malformed code in the
    // source without indexing it. (Deleting and recreating the index instead would drop the newer
    // documents and their versions: a replay would then put older values back.)
    await stores.pg.query(`ALTER TABLE "${pgSchema}".items ALTER COLUMN name DROP NOT NULL`);
    await stores.es.indices.putMapping({ index: productsIndex, properties: { code: { type: 'long', ignore_malformed: true } } });

    const replay = await cli(['dlq', 'replay', '--all', '--config', configFile, '--json']);
    expect(replay.code, replay.stderr).toBe(0);
    const results = JSON.parse(replay.stdout) as { id: string; outcome: string; sinks: string[]; table: string }[];
    expect(results.map((r) => r.outcome)).toEqual(bad.map(() => 'replayed'));
    for (const r of results) {
      const c = entries.find((e) => e.id === r.id)!.context;
      expect(r.sinks).toEqual([c.sink]);
      expect(r.table).toBe(c.table);
    }

    const listed = await cli(['dlq', 'list', '--status', 'all', '--config', configFile, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const statuses = JSON.parse(listed.stdout) as { id: string; status: string }[];
    expect(statuses.map((s) => s.id).sort()).toEqual(entries.map((e) => e.id).sort());
    expect(statuses.every((s) => s.status === 'replayed')).toBe(true);
    const open = await cli(['dlq', 'list', '--config', configFile, '--json']);
    expect(JSON.parse(open.stdout)).toEqual([]);

    // The targets are now what they would have been without the errors. Item 3 and product 7 keep
    // their newer values: their dead-lettered creates were replayed after them, and refused as stale.
    await check(() => false);
    const staleOnes = bad.filter((p) => p.stale);
    expect(staleOnes.map((p) => `${p.table} ${p.id}`).sort()).toEqual(['items 3', 'products 7']);
    const item3 = (await stores.pgRows(pgSchema, 'items')).find((r) => r['id'] === 3);
    expect(item3?.['name']).toBe('item-3 fixed');
    const product7 = (await stores.esDocs(productsIndex)).get('7');
    expect(product7?.['code']).toBe(707);
  });
});
