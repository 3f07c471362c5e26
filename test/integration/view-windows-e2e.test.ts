import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelopeRecord } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, type KafkaFixture } from '../support/kafka.ts';
import { routerChildren } from '../support/router-children.ts';
import { PG_URL } from '../support/stores.ts';
import { sessionTruth, slidingTruth, type Visit } from '../support/window-truth.ts';

/**
 * Session and sliding windows through real Kafka and the router process, results written by the
 * PostgreSQL sink: after each phase the result tables equal the windows computed from their
 * definitions over every change produced. A change bridging two sessions merges them (the two
 * merged-away rows leave the table); the router is killed (kill -9) and restarted; then the
 * group's offsets go back to the beginning, and every record delivered again changes nothing.
 */

const MIN = 60_000;
const BASE = Date.UTC(2026, 0, 1);
const q = (id: string) => `"${id}"`;

describe('session and sliding windows end to end: Kafka → cdc-router → PostgreSQL', () => {
  const id = uniqueName('view_windows_e2e').replace(/-/g, '_').toLowerCase();
  const topic = `${id}.public.visits`;
  const group = `${id}-router`;
  const target = `${id}_target`;
  const state = `${id}_state`;
  const client = new pg.Client({ connectionString: PG_URL });
  const routers = routerChildren({ pollMs: 300, timeoutMs: 90_000 });
  let kafka: KafkaFixture;
  let dir: string;
  let configPath: string;
  const produced: Visit[] = [];

  beforeAll(async () => {
    await client.connect();
    kafka = await kafkaFixture();
    await kafka.createTopic(topic, 2);
    dir = await mkdtemp(join(tmpdir(), 'cdc-view-windows-'));
    configPath = join(dir, 'config.json');
    const view = (window: unknown, table: string) => ({
      from: { stream: 'public.visits' },
      group_by: ['visitor'],
      window,
      event_time: 'at',
      aggregations: { n: { fn: 'count' }, total: { fn: 'sum', column: 'amount' } },
      to: { sink: 'pg', table: `public.${table}` },
    });
    await writeFile(
      configPath,
      JSON.stringify({
        kafka: { brokers: [BROKER], group_id: group, topics: [topic], heartbeat_interval_ms: 1000, session_timeout_ms: 6000 },
        sinks: { pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: target } },
        routes: [],
        state: { connection_string: PG_URL, schema: state },
        views: { sessions: view({ session: { gap: '5m' } }, 'sessions'), sliding: view({ sliding: { difference: '10m' } }, 'sliding') },
        retry: { initial_ms: 100, max_ms: 2000 },
        metrics: { port: 0 },
        log: { level: 'warn' },
      }),
    );
  });

  afterAll(async () => {
    await routers.killAll();
    for (const schema of [target, state]) await client.query(`DROP SCHEMA IF EXISTS ${q(schema)} CASCADE`).catch(() => undefined);
    await client.end();
    await kafka?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function produce(visits: readonly Visit[]): Promise<void> {
    await kafka.producer.send({
      topic,
      messages: visits.map((v) => {
        const r = envelopeRecord({ op: 'c', prefix: id, table: 'visits', key: { id: v.id }, after: { id: v.id, visitor: v.user, at: v.at, amount: v.amount } });
        return { key: r.key, value: r.value };
      }),
    });
    produced.push(...visits);
  }

  async function results(table: string): Promise<Record<string, Record<string, string>>> {
    const res = await client
      .query<{ visitor: string; window_start: string; window_end: string; n: string; total: string }>(
        `SELECT visitor, window_start::text, window_end::text, n::text, total::text FROM ${q(target)}.${q(table)}`,
      )
      .catch(() => ({ rows: [] }));
    return Object.fromEntries(
      res.rows.map((r) => [
        JSON.stringify({ user: r.visitor, window_start: Number(r.window_start), window_end: Number(r.window_end) }),
        { user: r.visitor, window_start: r.window_start, window_end: r.window_end, n: r.n, total: r.total },
      ]),
    );
  }

  const matches = async () => {
    const [sessions, sliding] = [await results('sessions'), await results('sliding')];
    const expected = [sessionTruth(produced, 5 * MIN), slidingTruth(produced, 10 * MIN)];
    return JSON.stringify(sortKeys([sessions, sliding])) === JSON.stringify(sortKeys(expected));
  };

  async function expectResults(what: string): Promise<void> {
    await routers.waitFor(matches, what).catch(() => undefined);
    expect(await results('sessions'), what).toEqual(sessionTruth(produced, 5 * MIN));
    expect(await results('sliding'), what).toEqual(slidingTruth(produced, 10 * MIN));
  }

  it('a bridging change merges two sessions in the PostgreSQL output; a kill -9 and a full redelivery change nothing', async () => {
    let nextId = 1;
    const v = (user: string, minute: number, amount: number): Visit => ({ id: nextId++, user, at: BASE + minute * MIN, amount });
    // u1: two sessions, [0, 2m] and [10m, 12m]; u2 and u3 around them.
    await produce([v('u1', 0, 3), v('u1', 2, 4), v('u1', 10, 5), v('u1', 12, 1), v('u2', 1, 7), v('u2', 30, 2), v('u3', 5, 9), v('u3', 9, 4)]);
    let router = routers.start(configPath, 'r0');
    await expectResults('the first changes');
    const before = await results('sessions');
    const first = JSON.stringify({ user: 'u1', window_start: BASE, window_end: BASE + 2 * MIN });
    const second = JSON.stringify({ user: 'u1', window_start: BASE + 10 * MIN, window_end: BASE + 12 * MIN });
    expect(Object.keys(before)).toEqual(expect.arrayContaining([first, second]));

    await routers.killHard(router);
    routers.note('kill -9 before the bridging change');
    // 6 min: within the 5 min gap of both u1 sessions.
    await produce([v('u1', 6, 10), v('u2', 40, 1), v('u3', 14, 2)]);
    router = routers.start(configPath, 'r1');
    await expectResults('the bridging change, after the restart');
    const merged = await results('sessions');
    expect(merged[first]).toBeUndefined();
    expect(merged[second]).toBeUndefined();
    expect(merged[JSON.stringify({ user: 'u1', window_start: BASE, window_end: BASE + 12 * MIN })]).toMatchObject({ n: '5', total: '23' });

    // Every record delivered again: the group starts over from the beginning of the topic.
    const exited = new Promise((resolve) => router.once('exit', resolve));
    router.kill('SIGTERM');
    expect(await exited).toBe(0);
    await kafka.admin.resetOffsets({ groupId: group, topic, earliest: true });
    await produce([v('u2', 44, 6)]);
    router = routers.start(configPath, 'r2');
    await routers.waitFor(async () => {
      const end = await kafka.endOffsets(topic);
      const committed = await kafka.committed(group, topic);
      return [...end].every(([p, e]) => e === 0n || committed.get(p) === e);
    }, 'the redelivered records to be committed');
    await expectResults('every record delivered twice');
    const offsets = await client.query<{ view: string; n: string }>(`SELECT view, sum(next_offset)::text AS n FROM ${q(state)}.view_offsets GROUP BY view ORDER BY view`);
    expect(offsets.rows).toEqual([
      { view: 'sessions', n: String(produced.length) },
      { view: 'sliding', n: String(produced.length) },
    ]);
  });
});

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, sortKeys(v)]));
  return value;
}
