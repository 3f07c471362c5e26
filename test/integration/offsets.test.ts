import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { GroupActiveError } from '../../src/consume/group-errors.ts';
import { connectGroupAdmin, type GroupAdmin } from '../../src/consume/group-admin.ts';
import { applyReset, groupOffsets, planReset } from '../../src/replay/group-offsets.ts';
import { startService } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { cli } from '../support/router-process.ts';

const logger = createLogger({ level: 'warn' });

interface ShowJson {
  group: string;
  state: string;
  members: { member_id: string; client_id: string; host: string; assignment: Record<string, number[]> }[];
  partitions: { topic: string; partition: number; committed: number | null; end: number; lag: number | null }[];
  total_lag: number | null;
}

describe('offsets show and reset on a real broker', () => {
  let kafka: KafkaFixture;
  let admin: GroupAdmin;
  let dir: string;
  beforeAll(async () => {
    kafka = await kafkaFixture();
    admin = await connectGroupAdmin((await resolveConfig(configDocument('unused', 'unused'))).kafka, logger);
    dir = await mkdtemp(join(tmpdir(), 'cdc-offsets-'));
  });
  afterAll(async () => {
    await admin.close();
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  function configDocument(topic: string, group: string) {
    return {
      kafka: { brokers: [BROKER], group_id: group, topics: [topic], heartbeat_interval_ms: 1000, session_timeout_ms: 10_000 },
      sinks: { out: { kind: 'file', path: join(dir ?? tmpdir(), `${group}.jsonl`), fsync: false } },
      routes: [{ table: 'public.items', sinks: ['out'] }],
      log: { level: 'warn' },
    };
  }

  async function produce(topic: string, partition: number, count: number, prefix: string): Promise<void> {
    const messages = Array.from({ length: count }, (_, i) => {
      const id = partition * 1000 + i;
      const env = envelope({ op: 'c', table: 'items', key: { id }, after: { id }, lsn: 100 + i, prefix });
      return { key: env.key, value: env.value, partition };
    });
    await kafka.producer.send({ topic, messages });
  }

  /** A topic with 2 partitions (10 and 6 records) that a router consumed to the end, and its config file. */
  async function consumedTopic(name: string) {
    const prefix = uniqueName(name);
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 2);
    await produce(topic, 0, 10, prefix);
    await produce(topic, 1, 6, prefix);
    const group = uniqueName(`${name}-group`);
    const document = configDocument(topic, group);
    const config = await resolveConfig(document);
    const file = join(dir, `${group}.json`);
    await writeFile(file, JSON.stringify(document));
    const service = await startService(config, { logger });
    await waitUntil(
      async () => {
        const c = await kafka.committed(group, topic);
        return c.get(0) === 10n && c.get(1) === 6n;
      },
      60_000,
      'the router to commit everything',
    );
    return { prefix, topic, group, config, file, service };
  }

  it('shows committed and end offsets, lag, the group state and its members', async () => {
    const { prefix, topic, group, config, file, service } = await consumedTopic('show');
    try {
      const live = await groupOffsets(admin, config.kafka);
      expect(live.group.state).toBe('Stable');
      expect(live.group.members).toHaveLength(1);
      expect(live.group.members[0]!.assignment).toEqual({ [topic]: [0, 1] });
      await service.stop();

      // Five more records on partition 0 while nobody consumes: lag 5 there, 0 on partition 1.
      await produce(topic, 0, 5, prefix);
      const shown = await cli(['offsets', 'show', '--config', file, '--json']);
      expect(shown).toMatchObject({ code: 0, stderr: '' });
      const json = JSON.parse(shown.stdout) as ShowJson;
      expect(json).toEqual({
        group,
        state: 'Empty',
        members: [],
        partitions: [
          { topic, partition: 0, committed: 10, end: 15, lag: 5 },
          { topic, partition: 1, committed: 6, end: 6, lag: 0 },
        ],
        total_lag: 5,
      });
      const text = await cli(['offsets', 'show', '--config', file]);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`group ${group}: state Empty, 0 member(s)`);
      expect(text.stdout).toMatch(new RegExp(`^${topic.replace(/\./g, '\\.')}\\s+0\\s+10\\s+15\\s+5$`, 'm'));
      expect(text.stdout).toContain('total lag: 5');

      // A group that never committed, with from_beginning (the default): committed unknown ("-"), lag
      // what it will read from the first retained offset, never 0.
      const fresh = await resolveConfig(configDocument(topic, uniqueName('never')));
      const none = await groupOffsets(admin, fresh.kafka);
      expect(none.group.state).toBe('Dead');
      expect(none.partitions.map((p) => [p.committed, p.end, p.lag])).toEqual([
        [undefined, 15n, 15n],
        [undefined, 6n, 6n],
      ]);
      expect(none.totalLag).toBe(21n);
      const neverFile = join(dir, 'never.json');
      await writeFile(neverFile, JSON.stringify(configDocument(topic, uniqueName('never'))));
      const never = JSON.parse((await cli(['offsets', 'show', '--config', neverFile, '--json'])).stdout) as ShowJson;
      expect(never.partitions.map((p) => [p.committed, p.lag])).toEqual([
        [null, 15],
        [null, 6],
      ]);
      expect(never.total_lag).toBe(21);
      const neverText = (await cli(['offsets', 'show', '--config', neverFile])).stdout;
      expect(neverText).toMatch(new RegExp(`^${topic.replace(/\./g, '\\.')}\\s+0\\s+-\\s+15\\s+15$`, 'm'));
      expect(neverText).toContain('2 partition(s) never committed (COMMITTED -): their lag counts from the first retained offset');
      expect(neverText).toContain('total lag: 21');

      // Without from_beginning a new group starts at the end: its lag is unknown (null), and so is the total.
      const lateDocument = configDocument(topic, uniqueName('late'));
      const lateFile = join(dir, 'late.json');
      await writeFile(lateFile, JSON.stringify({ ...lateDocument, kafka: { ...lateDocument.kafka, from_beginning: false } }));
      const late = JSON.parse((await cli(['offsets', 'show', '--config', lateFile, '--json'])).stdout) as ShowJson;
      expect(late.partitions.map((p) => [p.committed, p.end, p.lag])).toEqual([
        [null, 15, null],
        [null, 6, null],
      ]);
      expect(late.total_lag).toBeNull();
      const lateText = (await cli(['offsets', 'show', '--config', lateFile])).stdout;
      expect(lateText).toMatch(new RegExp(`^${topic.replace(/\./g, '\\.')}\\s+0\\s+-\\s+15\\s+-$`, 'm'));
      expect(lateText).toContain('from_beginning is false');
      expect(lateText).toContain('total lag: unknown');
    } finally {
      await service.stop();
    }
  });

  it('reset refuses while a router of the group runs, and sets the offsets once it stopped', async () => {
    const { topic, group, config, file, service } = await consumedTopic('reset');
    try {
      // Through the CLI: exit 2, a clear message, nothing changed.
      const refused = await cli(['offsets', 'reset', '--config', file, '--topic', topic, '--to-earliest']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`group ${group} is active (state Stable, 1 member(s))`);
      expect(refused.stdout).toBe('');
      await expect(planReset(admin, group, { topic, to: { kind: 'latest' } })).rejects.toBeInstanceOf(GroupActiveError);
      const c = await kafka.committed(group, topic);
      expect([c.get(0), c.get(1)]).toEqual([10n, 6n]);
    } finally {
      await service.stop();
    }

    const dry = await cli(['offsets', 'reset', '--config', file, '--topic', topic, '--to-earliest', '--dry-run']);
    expect(dry).toMatchObject({ code: 0, stderr: '' });
    expect(dry.stdout).toContain(`${topic}/0: 10 -> 0`);
    expect(dry.stdout).toContain(`${topic}/1: 6 -> 0`);
    let c = await kafka.committed(group, topic);
    expect([c.get(0), c.get(1)]).toEqual([10n, 6n]);

    const one = await cli(['offsets', 'reset', '--config', file, '--topic', topic, '--partition', '0', '--to-offset', '4']);
    expect(one).toMatchObject({ code: 0, stderr: '' });
    expect(one.stdout).toContain(`${topic}/0: 10 -> 4`);
    expect(one.stdout).not.toContain(`${topic}/1`);
    c = await kafka.committed(group, topic);
    expect([c.get(0), c.get(1)]).toEqual([4n, 6n]);

    // In process: offsets past the end are kept at the end; a timestamp before every record means 0.
    const plan = await planReset(admin, group, { topic, to: { kind: 'offset', offset: 1000n } });
    expect(plan.changes).toEqual([
      { partition: 0, from: 4n, to: 10n },
      { partition: 1, from: 6n, to: 6n },
    ]);
    const early = await planReset(admin, group, { topic, to: { kind: 'timestamp', ms: Date.now() - 3_600_000 } });
    expect(early.changes.map((ch) => ch.to)).toEqual([0n, 0n]);
    await applyReset(admin, await planReset(admin, group, { topic, partition: 1, to: { kind: 'earliest' } }));
    c = await kafka.committed(group, topic);
    expect([c.get(0), c.get(1)]).toEqual([4n, 0n]);

    // The router started again reads from the new offsets: partition 0 from 4, partition 1 from 0.
    const again = await startService(config, { logger });
    try {
      await waitUntil(
        async () => {
          const now = await kafka.committed(group, topic);
          return now.get(0) === 10n && now.get(1) === 6n;
        },
        60_000,
        'the restarted router to catch up',
      );
    } finally {
      await again.stop();
    }
    const lines = (await readFile(join(dir, `${group}.jsonl`), 'utf8')).split('\n').filter(Boolean);
    const perPartition = [0, 1].map((p) => lines.filter((l) => (JSON.parse(l) as { partition: number }).partition === p).length);
    expect(perPartition).toEqual([16, 12]);
  });
});
