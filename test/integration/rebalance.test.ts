import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelope, type RowOf } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, type KafkaFixture } from '../support/kafka.ts';
import {
  chaosSeed,
  joins,
  killAll,
  seededRandom,
  startRouter,
  tail,
  waitOrExplain,
  writeRouterConfig,
  type LogLine,
  type RouterProcess,
} from '../support/router-process.ts';
import { canonical, openStores, PG_URL, type Stores } from '../support/stores.ts';

/**
 * Two router processes in one consumer group over a topic of 8 partitions while changes stream in:
 * B joins mid-stream, A leaves (SIGTERM) and comes back, then B is killed (SIGKILL). Nothing may be
 * lost (the file sinks of all processes together hold every record; PostgreSQL ends with the last
 * change per key), the committed offsets reach the end, and nobody commits twice over anybody:
 * the committed offset of a partition never moves backwards (polled all along), and every commit a
 * process made (read from its OffsetCommit requests, logged by kafkajs at trace level) was for
 * partitions of its assignment at that moment.
 */

const SEED = chaosSeed(0x2eba1);
const PARTITIONS = 8;
const KEYS = 400;
/** Changes produced per step of the scenario, at about RATE per second. */
const PER_STEP = 2_500;
const RATE = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


async function fileOffsets(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const out: string[] = [];
  for (const l of text.split('\n')) {
    if (!l) continue;
    try {
      const line = JSON.parse(l) as { partition: number; offset: string };
      out.push(`${line.partition}/${line.offset}`);
    } catch {
      // A line cut by kill -9: its record was not acknowledged and is delivered again.
    }
  }
  return out;
}

/** One OffsetCommit the broker accepted, as a process's kafkajs trace log shows it. */
interface ObservedCommit {
  readonly process: string;
  /** Index of the request's log line in the process's log. */
  readonly at: number;
  readonly partitions: readonly number[];
}

/**
 * Pairs kafkajs's "Request OffsetCommit" lines (sent: position in the log) with their "Response
 * OffsetCommit" lines (the partitions, when accepted) by broker and correlation id.
 */
function observedCommits(router: RouterProcess, topic: string): ObservedCommit[] {
  const lines = router.logLines();
  const sentAt = new Map<string, number>();
  const out: ObservedCommit[] = [];
  lines.forEach((l, i) => {
    if (typeof l.msg !== 'string' || !l.msg.includes('OffsetCommit(')) return;
    const id = `${String(l['broker'])}#${String(l['correlationId'])}`;
    if (l.msg.startsWith('Request ')) sentAt.set(id, i);
    else if (l.msg.startsWith('Response ') && l['data'] && !l['error']) {
      const data = l['data'] as { responses?: { topic: string; partitions: { partition: number; errorCode: number }[] }[] };
      const partitions = (data.responses ?? [])
        .filter((r) => r.topic === topic)
        .flatMap((r) => r.partitions.filter((p) => p.errorCode === 0).map((p) => p.partition));
      out.push({ process: router.name, at: sentAt.get(id) ?? i, partitions });
    }
  });
  return out;
}

/**
 * Commits of a process for partitions it did not own when it sent them: the assignment of its last
 * "joined group" line before the request.
 */
function foreignCommits(router: RouterProcess, topic: string): string[] {
  const lines = router.logLines();
  const joinedAt = joins(router).map((j) => ({ index: lines.indexOf(j.line), partitions: new Set(j.assignment[topic] ?? []) }));
  const problems: string[] = [];
  for (const c of observedCommits(router, topic)) {
    const owner = joinedAt.filter((j) => j.index < c.at).pop();
    const foreign = c.partitions.filter((p) => !owner?.partitions.has(p));
    if (foreign.length > 0) {
      problems.push(`${router.name} committed partitions ${foreign.join(',')} owning ${owner ? [...owner.partitions].join(',') : 'nothing'} (log line ${c.at})`);
    }
  }
  return problems;
}

describe('rebalance: two routers in one group, joining, leaving, crashing while changes stream in', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  let dir: string;
  const id = uniqueName('rebalance').replace(/-/g, '_');
  const pgSchema = `it_${id}`;
  const prefix = id.replace(/_/g, '-');
  const topic = `${prefix}.public.items`;

  beforeAll(async () => {
    kafka = await kafkaFixture();
    stores = await openStores();
    dir = await mkdtemp(join(tmpdir(), 'cdc-rebalance-'));
  });
  afterAll(async () => {
    await killAll();
    await kafka.close();
    await stores.cleanup({ pgSchemas: [pgSchema] });
    await stores.close();
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'loses nothing, reaches the end, and never commits backwards or for a partition it does not own',
    async () => {
      console.log(`rebalance.test seed ${SEED} (CDC_CHAOS_SEED=${SEED} repeats this run)`);
      const r = seededRandom(SEED);
      await kafka.createTopic(topic, PARTITIONS);
      const group = uniqueName('rebalance-group');

      const configFor = (name: string) =>
        writeRouterConfig(dir, name, {
          kafka: {
            brokers: [BROKER],
            group_id: group,
            topics: [topic],
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 500,
            rebalance_timeout_ms: 15_000,
          },
          sinks: {
            out: { kind: 'file', path: join(dir, `${name}.jsonl`) },
            pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
          },
          routes: [{ table: 'public.items', sinks: ['out', 'pg'] }],
          max_batch_size: 200,
          metrics: { enabled: false },
          // kafkajs's debug lines (its protocol requests, among them every OffsetCommit and its
          // partitions) arrive at trace, with KAFKAJS_LOG_LEVEL=debug (see start below).
          log: { level: 'trace' },
        });
      const configA = await configFor('A');
      const configB = await configFor('B');

      // --- the stream: creates, updates and deletes (with tombstones) of KEYS rows, at RATE per second
      const expected = new Map<number, RowOf | undefined>();
      const versions = new Map<number, number>();
      const changeOffsets = new Set<string>();
      const nextOffset = new Map<number, bigint>();
      let produced = 0;
      let lsn = 10_000;
      let streaming = true;
      const stream = (async () => {
        while (streaming) {
          const t = Date.now();
          const messages: { partition: number; key: string; value: string | null }[] = [];
          for (let i = 0; i < RATE / 10; i++) {
            const key = r.int(1, KEYS);
            const exists = expected.get(key) !== undefined;
            const op = !exists ? 'c' : r.next() < 0.1 ? 'd' : 'u';
            const version = (versions.get(key) ?? -1) + 1;
            versions.set(key, version);
            const after = op === 'd' ? null : { id: key, name: `item ${key} v${version}`, qty: version % 17, tags: { v: version } };
            const env = envelope({ op, table: 'items', key: { id: key }, after, before: op === 'c' ? null : { id: key }, lsn: (lsn += 8), prefix });
            const partition = key % PARTITIONS;
            const offset = nextOffset.get(partition) ?? 0n;
            changeOffsets.add(`${partition}/${offset}`);
            messages.push({ partition, key: env.key, value: env.value });
            if (op === 'd') {
              messages.push({ partition, key: env.key, value: null });
              nextOffset.set(partition, offset + 2n);
            } else nextOffset.set(partition, offset + 1n);
            expected.set(key, after ?? undefined);
          }
          await kafka.producer.send({ topic, messages });
          produced += RATE / 10;
          await sleep(Math.max(0, 100 - (Date.now() - t)));
        }
      })();

      // --- committed offsets, polled all along: per partition they must never go back
      const lastCommitted = new Map<number, bigint>();
      const backwards: string[] = [];
      let polls = 0;
      const pollOnce = async () => {
        const c = await kafka.committed(group, topic);
        polls++;
        for (const [p, offset] of c) {
          const before = lastCommitted.get(p) ?? -1n;
          if (offset < before) backwards.push(`partition ${p}: ${before} -> ${offset}`);
          if (offset > before) lastCommitted.set(p, offset);
        }
      };
      let polling = true;
      const poller = (async () => {
        while (polling) {
          await pollOnce().catch(() => undefined);
          await sleep(100);
        }
      })();

      const routers: RouterProcess[] = [];
      const all = () => routers;
      const start = (config: string, name: string) => {
        const router = startRouter(config, { name, env: { KAFKAJS_LOG_LEVEL: 'debug' } });
        routers.push(router);
        return router;
      };
      const untilProduced = async (n: number) => {
        const target = produced + n;
        await waitOrExplain(() => produced >= target, 60_000, `${n} more changes produced`, all);
      };
      /**
       * Waits until the group has settled on the given members: each joined at least `minJoins`
       * times since it started, and their latest assignments are disjoint and cover every
       * partition (an extra rebalance on the way changes nothing).
       */
      const settled = async (what: string, members: { router: RouterProcess; minJoins: number }[]) => {
        await waitOrExplain(
          () => {
            if (!members.every((m) => joins(m.router).length >= m.minJoins)) return false;
            const owned = members.flatMap((m) => joins(m.router).at(-1)!.assignment[topic] ?? []);
            return owned.length === PARTITIONS && new Set(owned).size === PARTITIONS;
          },
          60_000,
          what,
          all,
        );
        return members.map((m) => (joins(m.router).at(-1)!.assignment[topic] ?? []).length);
      };

      try {
        // A alone.
        const a1 = start(configA, 'A');
        expect(await settled('A to own every partition', [{ router: a1, minJoins: 1 }])).toEqual([PARTITIONS]);
        await untilProduced(PER_STEP);

        // B joins mid-stream: the partitions are split between A and B.
        const b = start(configB, 'B');
        const split = await settled('A and B to share the partitions', [
          { router: a1, minJoins: 2 },
          { router: b, minJoins: 1 },
        ]);
        expect(split.every((n) => n > 0), `partitions per member: ${split.join(', ')}`).toBe(true);
        await untilProduced(PER_STEP);

        // A leaves cleanly (drains, commits, leaves the group); B takes everything.
        expect(await a1.terminate(), tail(a1)).toEqual({ code: 0, signal: null });
        await settled('B to own every partition', [{ router: b, minJoins: 2 }]);
        await untilProduced(PER_STEP);

        // A comes back (a new process, same config): split again.
        const a2 = start(configA, 'A (back)');
        const again = await settled('A (back) and B to share the partitions', [
          { router: a2, minJoins: 1 },
          { router: b, minJoins: 3 },
        ]);
        expect(again.every((n) => n > 0), `partitions per member: ${again.join(', ')}`).toBe(true);
        await untilProduced(PER_STEP);

        // B dies: once its session expires, A takes everything.
        await b.kill9();
        await settled('A (back) to own every partition', [{ router: a2, minJoins: 2 }]);
        await untilProduced(PER_STEP);
        streaming = false;
        await stream;

        const ends = await kafka.endOffsets(topic);
        for (let p = 0; p < PARTITIONS; p++) expect(ends.get(p), `end of partition ${p}`).toBe(nextOffset.get(p) ?? 0n);
        await waitOrExplain(
          async () => {
            const c = await kafka.committed(group, topic);
            return [...ends].every(([p, end]) => c.get(p) === end);
          },
          120_000,
          'the committed offsets to reach the end offsets',
          all,
        );
        expect(await a2.terminate(), tail(a2)).toEqual({ code: 0, signal: null });
      } finally {
        streaming = false;
        await stream.catch(() => undefined);
        polling = false;
        await poller;
      }
      await pollOnce();
      console.log(`rebalance.test: ${produced} changes; ${polls} polls of the committed offsets`);

      // Never backwards, and at the end.
      expect(backwards, 'committed offsets that moved backwards').toEqual([]);
      for (let p = 0; p < PARTITIONS; p++) expect(lastCommitted.get(p), `committed offset of partition ${p}`).toBe(nextOffset.get(p));

      // Nobody committed for a partition it did not own at that moment.
      const commits = routers.flatMap((router) => observedCommits(router, topic));
      console.log(`rebalance.test: ${commits.length} accepted OffsetCommit requests observed: ${routers.map((router) => `${router.name} ${observedCommits(router, topic).length}`).join(', ')}`);
      for (const router of routers) expect(observedCommits(router, topic).length, `${router.name}: commits seen in its log`).toBeGreaterThan(0);
      expect(routers.flatMap((router) => foreignCommits(router, topic))).toEqual([]);
      for (const router of routers) {
        const trouble = router.logLines().filter((l: LogLine) => /halted|crashed|dead-lettered/.test(l.msg ?? ''));
        expect(trouble.map((l) => l.msg), tail(router)).toEqual([]);
      }

      // No loss: the file sinks together hold every change (redeliveries allowed), nothing else.
      const written = [...(await fileOffsets(join(dir, 'A.jsonl'))), ...(await fileOffsets(join(dir, 'B.jsonl')))];
      const inFiles = new Set(written);
      const missing = [...changeOffsets].filter((k) => !inFiles.has(k));
      console.log(`rebalance.test: file sinks: ${written.length} lines for ${changeOffsets.size} changes (${written.length - inFiles.size} delivered twice)`);
      expect(missing.slice(0, 20), `${missing.length} changes in no file sink`).toEqual([]);
      expect(inFiles.size).toBe(changeOffsets.size);

      // PostgreSQL: the last change per key, deleted keys absent.
      const rows = new Map((await stores.pgRows(pgSchema, 'items')).map((row) => [Number(row['id']), canonical(Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith('__cdc'))))]));
      const want = new Map([...expected].filter((e): e is [number, RowOf] => e[1] !== undefined).map(([k, row]) => [k, canonical(row)]));
      const wrong = [...want].filter(([k, row]) => rows.get(k) !== row).map(([k]) => k);
      expect(wrong.slice(0, 10), `${wrong.length} rows missing or wrong`).toEqual([]);
      expect([...rows.keys()].filter((k) => !want.has(k)), 'rows of deleted keys').toEqual([]);
    },
    300_000,
  );
});
