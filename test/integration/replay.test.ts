import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { runReplay, replayExitCode, type ReplayRequest, type ReplaySummary } from '../../src/replay/replay.ts';
import { startService, type Service } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, testKafka, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { cli } from '../support/router-process.ts';
import { readJsonLines } from '../support/json-lines.ts';

const CLI_ENV = { ...process.env, LOG_LEVEL: 'warn' };
const logger = createLogger({ level: 'warn' });

interface Line {
  partition: number;
  offset: string;
  key: { id: number };
}

const readLines = (path: string) => readJsonLines<Line>(path);

/** "partition/offset" of each line, sorted: what a replay delivered, compared as a set. */
const coordinates = (lines: readonly Line[]) => lines.map((l) => `${l.partition}/${l.offset}`).sort();
const range = (partition: number, from: number, until: number) =>
  Array.from({ length: until - from }, (_, i) => `${partition}/${from + i}`);

function configDocument(topic: string, group: string, out: string) {
  return {
    kafka: { brokers: [BROKER], group_id: group, topics: [topic], heartbeat_interval_ms: 1000, session_timeout_ms: 10_000 },
    sinks: { out: { kind: 'file', path: out, fsync: false } },
    routes: [{ table: 'public.items', sinks: ['out'] }],
    retry: { initial_ms: 50, max_ms: 200 },
    log: { level: 'warn' },
  };
}

describe('replay on a real broker', () => {
  let kafka: KafkaFixture;
  let dir: string;
  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-replay-'));
  });
  afterAll(async () => {
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** Replay groups left behind (there should be none): every group named after the live one. */
  async function replayGroupsOf(group: string): Promise<string[]> {
    const { groups } = await kafka.admin.listGroups();
    return groups.map((g) => g.groupId).filter((g) => g.startsWith(`${group}-replay-`));
  }

  it('re-delivers exactly the range asked, by offset or by timestamp, without touching the live group', async () => {
    const prefix = uniqueName('replay');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 2);
    // Ten changes per partition, record i stamped base + i s; partition 0 ends with a tombstone.
    const base = Date.now() - 3_600_000;
    for (let p = 0; p < 2; p++) {
      const messages: { key: string; value: string | null; partition: number; timestamp: string }[] = [];
      for (let i = 0; i < 10; i++) {
        const id = p * 100 + i;
        const env = envelope({ op: 'c', table: 'items', key: { id }, after: { id, v: i }, lsn: 1000 + i * 8, prefix });
        messages.push({ key: env.key, value: env.value, partition: p, timestamp: String(base + i * 1000) });
      }
      if (p === 0) messages.push({ key: JSON.stringify({ id: 9 }), value: null, partition: 0, timestamp: String(base + 10_000) });
      await kafka.producer.send({ topic, messages });
    }

    const group = uniqueName('replay-live');
    const out = join(dir, 'items.jsonl');
    const config: Config = await resolveConfig(configDocument(topic, group, out));
    const service: Service = await startService(config, { logger });
    let rejoins = 0;
    const replays: ReplaySummary[] = [];
    try {
      await waitUntil(
        async () => {
          const c = await kafka.committed(group, topic);
          return c.get(0) === 11n && c.get(1) === 10n;
        },
        60_000,
        'the live group to commit everything',
      );
      // The live router keeps running: a replay must neither move its offsets nor rebalance it.
      service.events.on('group.joined', () => rejoins++);
      const live = await readLines(out);
      expect(live).toHaveLength(20);

      const replay = async (request: ReplayRequest) => {
        const before = (await readLines(out)).length;
        const summary = await runReplay(config, request, { logger });
        replays.push(summary);
        return { summary, lines: (await readLines(out)).slice(before) };
      };

      // From an offset, to the end offsets taken at the start.
      const a = await replay({ topic, from: { kind: 'offset', offset: 3n } });
      expect(coordinates(a.lines)).toEqual([...range(0, 3, 10), ...range(1, 3, 10)].sort());
      expect(a.summary.partitions).toEqual([
        { partition: 0, from: 3n, until: 11n, records: 8, written: 7, skipped: 1, failed: 0, complete: true },
        { partition: 1, from: 3n, until: 10n, records: 7, written: 7, skipped: 0, failed: 0, complete: true },
      ]);
      expect(replayExitCode(a.summary)).toBe(0);

      // From a timestamp until a timestamp, one partition: records stamped in [base+5s, base+8s).
      const b = await replay({
        topic,
        partition: 1,
        from: { kind: 'timestamp', ms: base + 5000 },
        until: { kind: 'timestamp', ms: base + 8000 },
      });
      expect(coordinates(b.lines)).toEqual(range(1, 5, 8));
      expect(b.summary.partitions).toHaveLength(1);
      expect(b.summary.partitions[0]).toMatchObject({ partition: 1, from: 5n, until: 8n, records: 3, written: 3, complete: true });

      // --until-offset is exclusive; a later timestamp than any record means "from the end": nothing.
      const c = await replay({ topic, from: { kind: 'offset', offset: 2n }, until: { kind: 'offset', offset: 4n } });
      expect(coordinates(c.lines)).toEqual([...range(0, 2, 4), ...range(1, 2, 4)].sort());
      const d = await replay({ topic, from: { kind: 'timestamp', ms: Date.now() + 60_000 } });
      expect(d.lines).toEqual([]);
      expect(d.summary.group).toBeUndefined();

      // A dry run reads nothing.
      const e = await replay({ topic, from: { kind: 'offset', offset: 0n }, dryRun: true });
      expect(e.lines).toEqual([]);
      expect(e.summary.partitions.map((p) => [p.from, p.until])).toEqual([
        [0n, 11n],
        [0n, 10n],
      ]);

      const committed = await kafka.committed(group, topic);
      expect([committed.get(0), committed.get(1)]).toEqual([11n, 10n]);
      expect(rejoins).toBe(0);
    } finally {
      await service.stop();
    }
    // Every throwaway group was deleted.
    expect(replays.filter((r) => r.group !== undefined)).toHaveLength(3);
    expect(await replayGroupsOf(group)).toEqual([]);
  });

  it('stops at the end of a range that ends with a transaction marker', async () => {
    const prefix = uniqueName('replay-tx');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 1);
    const producer = testKafka().producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      const tx = await producer.transaction();
      const messages = [1, 2, 3].map((id) => envelope({ op: 'c', table: 'items', key: { id }, after: { id }, lsn: 100 + id, prefix }));
      await tx.send({ topic, messages });
      await tx.commit();
    } finally {
      await producer.disconnect();
    }
    // Three records and the commit marker: the end offset is 4, but offset 3 is never delivered.
    // The broker writes the marker just after the commit returns.
    await waitUntil(async () => (await kafka.endOffsets(topic)).get(0) === 4n, 30_000, 'the commit marker');
    const group = uniqueName('replay-tx-live');
    const out = join(dir, 'tx.jsonl');
    const config = await resolveConfig(configDocument(topic, group, out));
    const summary = await runReplay(config, { topic, from: { kind: 'offset', offset: 0n } }, { logger });
    expect(summary.partitions[0]).toMatchObject({ from: 0n, until: 4n, records: 3, written: 3, complete: true });
    expect(coordinates(await readLines(out))).toEqual(range(0, 0, 3));
    expect(await replayGroupsOf(group)).toEqual([]);
  });

  it('runs from the command line: exit 0 with a summary, exit 1 when a record fails, --dry-run reads nothing', async () => {
    const prefix = uniqueName('replay-cli');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 1);
    const good = (id: number) => envelope({ op: 'c', table: 'items', key: { id }, after: { id }, lsn: 100 + id, prefix });
    const messages = [good(0), good(1), good(2), { key: '{"id":3}', value: '{"op":"c", "after": {' }, good(4)];
    await kafka.producer.send({ topic, messages: messages.map((m) => ({ key: m.key, value: m.value })) });
    const group = uniqueName('replay-cli-live');
    const out = join(dir, 'cli.jsonl');
    const file = join(dir, `${prefix}.json`);
    await writeFile(file, JSON.stringify(configDocument(topic, group, out)));

    const ok = await cli(['replay', '--config', file, '--topic', topic, '--from-offset', '1', '--until-offset', '3'], { env: CLI_ENV });
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toMatch(/^0\s+1\s+3\s+2\s+2\s+0\s+0\s+done$/m);
    expect(coordinates(await readLines(out))).toEqual(range(0, 1, 3));

    const dry = await cli(['replay', '--config', file, '--topic', topic, '--from-offset', '0', '--dry-run'], { env: CLI_ENV });
    expect(dry).toMatchObject({ code: 0, stderr: '' });
    expect(dry.stdout).toMatch(/^0\s+0\s+5\s+5$/m);
    expect(await readLines(out)).toHaveLength(2);

    // No dead-letter queue configured: like the live service, the partition halts at the bad record.
    const bad = await cli(['replay', '--config', file, '--topic', topic, '--from-offset', '0'], { env: CLI_ENV });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/halted at 3/);
    expect(bad.stdout).toContain(`${topic}/0@3`);
    expect(coordinates(await readLines(out))).toEqual(expect.arrayContaining(range(0, 0, 3)));

    const usage = await cli(['replay', '--config', file, '--topic', topic, '--from-offset', '0', '--partition', '7'], { env: CLI_ENV });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain(`topic ${topic} has no partition 7`);
    expect(await replayGroupsOf(group)).toEqual([]);
    // The live group never existed, and a replay did not create it.
    expect((await kafka.committed(group, topic)).get(0)).toBe(-1n);
  });
});
