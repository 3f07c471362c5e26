import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDecoder } from '../../src/decode/debezium.ts';
import { envelopeRecord } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, type KafkaFixture } from '../support/kafka.ts';
import { PG_URL } from '../support/stores.ts';
import { cli } from '../support/router-process.ts';

describe('run --dry-run on a real broker', () => {
  let kafka: KafkaFixture;
  let db: pg.Client;
  let dir: string;
  beforeAll(async () => {
    kafka = await kafkaFixture();
    db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    dir = await mkdtemp(join(tmpdir(), 'cdc-dry-run-'));
  });
  afterAll(async () => {
    await kafka.close();
    await db.end();
    await rm(dir, { recursive: true, force: true });
  });

  it("prints each sink's writes and the dead letters of the config's real pipeline, and commits and writes nothing", async () => {
    const prefix = uniqueName('dryrun').replace(/-/g, '_');
    const topic = `${prefix}.public.items`;
    const group = uniqueName('dry-run-live');
    const dlqTopic = uniqueName('dry-run-dlq');
    const pgSchema = uniqueName('dry_run').replace(/-/g, '_');
    const file = join(dir, 'out.jsonl');
    await kafka.createTopic(topic, 1);
    const config = join(dir, 'config.json');
    await writeFile(
      config,
      JSON.stringify({
        kafka: { brokers: [BROKER], group_id: group, topics: [topic], heartbeat_interval_ms: 1000, session_timeout_ms: 10_000 },
        sinks: {
          pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
          out: { kind: 'file', path: file, fsync: false },
        },
        routes: [{ table: 'public.items', transforms: [{ kind: 'drop_fields', fields: ['secret'] }], sinks: ['pg', 'out'] }],
        unrouted: 'skip',
        dlq: { kind: 'kafka', topic: dlqTopic },
        metrics: { enabled: false },
        log: { level: 'warn' },
      }),
    );

    const change = (input: Parameters<typeof envelopeRecord>[0]) => {
      const r = envelopeRecord({ prefix, ...input });
      return { key: r.key, value: r.value };
    };
    const malformed = { key: JSON.stringify({ id: 3 }), value: '{"op": "c", "after": ' };
    const messages = [
      change({ op: 'c', table: 'items', key: { id: 1 }, after: { id: 1, name: 'a', secret: 's1' } }),
      change({ op: 'u', table: 'items', key: { id: 1 }, after: { id: 1, name: 'b', secret: 's2' }, withSchema: true }),
      change({ op: 'd', table: 'items', key: { id: 2 }, before: { id: 2 } }),
      malformed,
      { key: JSON.stringify({ id: 2 }), value: null },
      change({ op: 'c', table: 'other', key: { id: 9 }, after: { id: 9 } }),
      change({ op: 't', table: 'items', key: null }),
    ];
    await kafka.producer.send({ topic, messages });
    // The decoder's own words for the malformed record, without its coordinates.
    let decodeMessage = '';
    try {
      createDecoder().decode({ topic, partition: 0, offset: '3', timestamp: 0, key: Buffer.from(malformed.key), value: Buffer.from(malformed.value), headers: {} });
    } catch (err) {
      decodeMessage = (err as Error).message.replace(`${topic}/0@3: `, '');
    }
    expect(decodeMessage).toMatch(/./);

    const report = await cli(['run', '-c', config, '--dry-run']);
    expect(report.stderr).toMatch(new RegExp(`dry run: 7 record\\(s\\) from ${topic} \\(read to the end offsets of the start\\); throwaway group ${group}-dry-run-\\S+ deleted`));
    expect(report.code).toBe(1);
    const writes = (sink: string) => [
      `sink ${sink}: 2 upsert(s), 1 delete(s), 1 truncate(s)`,
      `  upsert public.items key {"id":1} row {"id":1,"name":"a"}  (${topic}/0@0)`,
      `  upsert public.items key {"id":1} row {"id":1,"name":"b"}  (${topic}/0@1)`,
      `  delete public.items key {"id":2}  (${topic}/0@2)`,
      `  truncate public.items  (${topic}/0@6)`,
    ];
    expect(report.stdout).toBe(
      [
        ...writes('pg'),
        ...writes('out'),
        'dead letters: 1 (to the kafka dead-letter queue)',
        `  MALFORMED_JSON (decode): ${decodeMessage}  (${topic}/0@3)`,
        'skipped: 2 (tombstone 1, unrouted 1)',
        '',
      ].join('\n'),
    );

    const lines = await cli(['run', '-c', config, '--dry-run', '--json', '--max-records', '7']);
    expect(lines.code).toBe(1);
    const at = (offset: number) => ({ topic, partition: 0, offset: String(offset) });
    const jsonWrites = (sink: string) => [
      { type: 'write', sink, op: 'upsert', table: 'public.items', key: { id: 1 }, row: { id: 1, name: 'a' }, ...at(0) },
      { type: 'write', sink, op: 'upsert', table: 'public.items', key: { id: 1 }, row: { id: 1, name: 'b' }, ...at(1) },
      { type: 'write', sink, op: 'delete', table: 'public.items', key: { id: 2 }, ...at(2) },
      { type: 'write', sink, op: 'truncate', table: 'public.items', ...at(6) },
    ];
    const expected = [
      ...jsonWrites('pg'),
      ...jsonWrites('out'),
      { type: 'dead_letter', stage: 'decode', code: 'MALFORMED_JSON', message: decodeMessage, ...at(3) },
      { type: 'skipped', reason: 'tombstone', ...at(4) },
      { type: 'skipped', reason: 'unrouted', ...at(5) },
    ];
    // One object a line, streamed per fetched batch: compared as a set.
    const byText = (a: unknown, b: unknown) => JSON.stringify(a).localeCompare(JSON.stringify(b));
    const printed = lines.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(printed.sort(byText)).toEqual(expected.sort(byText));

    // Nothing committed for the live group, no throwaway group left, nothing written anywhere.
    expect([...(await kafka.committed(group, topic)).values()]).toEqual([-1n]);
    const { groups } = await kafka.admin.listGroups();
    expect(groups.map((g) => g.groupId).filter((g) => g.startsWith(group))).toEqual([]);
    const schemas = await db.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [pgSchema]);
    expect(schemas.rowCount).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(await kafka.admin.listTopics()).not.toContain(dlqTopic);
  });
});
