import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { startService, type Service } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { readJsonLines } from '../support/json-lines.ts';

interface Line {
  op: string;
  table: string;
  key: Record<string, unknown>;
  after: Record<string, unknown> | null;
  partition: number;
  offset: string;
  position: string;
}

const readLines = (path: string) => readJsonLines<Line>(path);

describe('delivery spine on a real broker', () => {
  let kafka: KafkaFixture;
  let dir: string;
  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-spine-'));
  });
  afterAll(async () => {
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('delivers every change once, in per-key order, and commits up to the end offsets', async () => {
    const prefix = uniqueName('spine');
    const customers = `${prefix}.public.customers`;
    const orders = `${prefix}.public.orders`;
    await kafka.createTopic(customers, 3);
    await kafka.createTopic(orders, 2);

    // 40 keys, each created, updated 3 times; every 4th deleted with its tombstone. Half with schema.
    const expected = new Map<string, string[]>();
    const messages: { topic: string; key: string; value: string | null }[] = [];
    let lsn = 1000;
    for (let round = 0; round < 5; round++) {
      for (let id = 0; id < 40; id++) {
        const table = id % 2 === 0 ? 'customers' : 'orders';
        const topic = table === 'customers' ? customers : orders;
        const deleted = id % 4 === 0 && round === 4;
        const op = round === 0 ? 'c' : deleted ? 'd' : 'u';
        const row = { id, name: `name-${id}-${round}`, score: round * 1.5 };
        const env = envelope({
          op,
          table,
          key: { id },
          before: round === 0 ? null : { id, name: `name-${id}-${round - 1}`, score: (round - 1) * 1.5 },
          after: deleted ? null : row,
          lsn: (lsn += 16),
          withSchema: id % 3 === 0,
          prefix,
        });
        messages.push({ topic, key: env.key, value: env.value });
        const k = `${table}:${id}`;
        expected.set(k, [...(expected.get(k) ?? []), op]);
        if (deleted) messages.push({ topic, key: env.key, value: null });
      }
    }
    // A heartbeat-looking table filter: orders are flattened with __op added.
    for (const m of messages) await kafka.producer.send({ topic: m.topic, messages: [{ key: m.key, value: m.value }] });

    const out = join(dir, 'changes.jsonl');
    const group = uniqueName('spine-group');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topic_pattern: `^${prefix.replace(/[-.]/g, '\\$&')}\\.public\\..*` },
      sinks: { out: { kind: 'file', path: out, fsync: false } },
      routes: [
        { table: 'public.customers', sinks: ['out'] },
        { table: 'public.orders', transforms: [{ kind: 'flatten', add_fields: ['op'] }], sinks: ['out'] },
      ],
    });
    const service: Service = await startService(config, { logger: createLogger({ level: 'warn' }) });
    try {
      const ends = new Map([
        [customers, await kafka.endOffsets(customers)],
        [orders, await kafka.endOffsets(orders)],
      ]);
      await waitUntil(
        async () => {
          for (const [topic, end] of ends) {
            const committed = await kafka.committed(group, topic);
            for (const [p, e] of end) if (committed.get(p) !== e) return false;
          }
          return true;
        },
        90_000,
        'committed offsets to reach the end offsets',
      );
    } finally {
      await service.stop();
    }

    const lines = await readLines(out);
    // Exactly once: no (partition, offset) twice, and every change present.
    const seen = new Set(lines.map((l) => `${l.table}/${l.partition}/${l.offset}`));
    expect(seen.size).toBe(lines.length);
    expect(lines.length).toBe(200);
    const got = new Map<string, string[]>();
    const lastPosition = new Map<string, string>();
    for (const l of lines) {
      const k = `${l.table.split('.')[1]}:${String(l.key['id'])}`;
      got.set(k, [...(got.get(k) ?? []), l.op]);
      // Per key, positions arrive strictly increasing.
      const prev = lastPosition.get(k);
      if (prev !== undefined) expect(l.position > prev).toBe(true);
      lastPosition.set(k, l.position);
      if (l.table === 'public.orders' && l.after) expect(l.after['__op']).toBe(l.op);
    }
    expect(got).toEqual(expected);
  });

  it('halts a partition at a bad record: logged with its coordinates, nothing after it committed', async () => {
    const prefix = uniqueName('bad');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 1);
    const good = (id: number) => envelope({ op: 'c', table: 'items', key: { id }, after: { id }, lsn: 100 + id, prefix });
    const messages = [good(1), good(2), { key: '{"id":3}', value: '{"op":"c", "after": {' }, good(4)];
    await kafka.producer.send({ topic, messages: messages.map((m) => ({ key: m.key, value: m.value })) });
    const out = join(dir, 'bad.jsonl');
    const group = uniqueName('bad-group');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: { out: { kind: 'file', path: out, fsync: false } },
      routes: [{ table: 'public.items', sinks: ['out'] }],
    });
    const service = await startService(config, { logger: createLogger({ level: 'fatal' }) });
    try {
      const halted = await service.events.waitFor('partition.halted', (h) => h.topic === topic);
      expect(halted.offset).toBe('2');
      expect(halted.error.stage).toBe('decode');
      expect(halted.error.code).toBe('MALFORMED_JSON');
      expect(halted.error.message).toContain(`${topic}/0@2`);
      await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === 2n, 30_000, 'commit up to the bad record');
      expect(service.consumer.paused()).toEqual([{ topic, partitions: [0] }]);
    } finally {
      await service.stop();
    }
    expect((await kafka.committed(group, topic)).get(0)).toBe(2n);
    const lines = await readLines(out);
    expect(lines.map((l) => l.offset).sort()).toEqual(['0', '1', '3']);
  });
});
