import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelope } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** The router's stderr, kept to explain a failure. */
let routerLog = '';

function startRouter(configPath: string): ChildProcess {
  const child = spawn(process.execPath, [join(ROOT, 'bin/cdc-router.js'), 'run', '--config', configPath], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  child.stderr?.on('data', (d: Buffer) => {
    routerLog = (routerLog + d.toString()).slice(-20_000);
  });
  return child;
}

async function waitOrExplain<T>(fn: () => Promise<T>, what: string): Promise<NonNullable<T>> {
  try {
    return await waitUntil(fn, 90_000, what);
  } catch (err) {
    throw new Error(`${String(err)}\nrouter log tail:\n${routerLog.slice(-4000)}`);
  }
}

async function offsetsIn(path: string, partition: number): Promise<bigint[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { partition: number; offset: string })
    .filter((l) => l.partition === partition)
    .map((l) => BigInt(l.offset));
}

describe('crash safety: kill -9 with an unacknowledged record', () => {
  let kafka: KafkaFixture;
  let dir: string;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-crash-'));
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('never commits past the unacknowledged offset and redelivers everything from it after a restart', async () => {
    const prefix = uniqueName('crash');
    const topic = `${prefix}.public.items`;
    await kafka.createTopic(topic, 2);
    const perPartition = 60;
    for (let p = 0; p < 2; p++) {
      const messages = Array.from({ length: perPartition }, (_, i) => {
        const env = envelope({ op: 'c', table: 'items', key: { id: p * 1000 + i }, after: { id: p * 1000 + i, v: `x${i}` }, lsn: 100 + i * 8, prefix });
        return { key: env.key, value: env.value, partition: p };
      });
      await kafka.producer.send({ topic, messages });
    }
    const N = 25n;
    const stuckPartition = 1;
    const group = uniqueName('crash-group');
    const first = join(dir, 'first.jsonl');
    const second = join(dir, 'second.jsonl');
    const kafkaBlock = { brokers: [BROKER], group_id: group, topics: [topic], heartbeat_interval_ms: 1000, session_timeout_ms: 10000 };
    const cfg1 = join(dir, 'stuck.json');
    await writeFile(
      cfg1,
      JSON.stringify({
        kafka: kafkaBlock,
        handlers: join(ROOT, 'test/fixtures/stuck-sink-handlers.ts'),
        sinks: { out: { kind: 'stuck', path: first, partition: stuckPartition, offset: N.toString() } },
        routes: [{ table: 'public.items', sinks: ['out'] }],
        retry: { initial_ms: 50, max_ms: 200 },
      }),
    );

    const router = startRouter(cfg1);
    children.push(router);
    let maxCommitted = -1n;
    // The healthy partition completes; the stuck one is written past N but committed only up to N.
    await waitOrExplain(
      async () => {
        const c = await kafka.committed(group, topic);
        const stuck = c.get(stuckPartition) ?? -1n;
        if (stuck > maxCommitted) maxCommitted = stuck;
        const written = await offsetsIn(first, stuckPartition);
        return c.get(0) === BigInt(perPartition) && stuck === N && written.includes(BigInt(perPartition - 1));
      },
      'the healthy partition to finish and the stuck one to reach N',
    );
    // Give the router time to (wrongly) commit further, watching all the while.
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      const stuck = (await kafka.committed(group, topic)).get(stuckPartition) ?? -1n;
      if (stuck > maxCommitted) maxCommitted = stuck;
      await new Promise((r) => setTimeout(r, 250));
    }
    router.kill('SIGKILL');
    await new Promise((r) => router.once('exit', r));
    expect(maxCommitted).toBe(N);
    expect((await kafka.committed(group, topic)).get(stuckPartition)).toBe(N);

    // Restart with a sink that acknowledges everything: every record from N on comes again.
    const cfg2 = join(dir, 'healthy.json');
    await writeFile(
      cfg2,
      JSON.stringify({
        kafka: kafkaBlock,
        sinks: { out: { kind: 'file', path: second } },
        routes: [{ table: 'public.items', sinks: ['out'] }],
      }),
    );
    const again = startRouter(cfg2);
    children.push(again);
    await waitOrExplain(
      async () => (await kafka.committed(group, topic)).get(stuckPartition) === BigInt(perPartition),
      'the stuck partition to be fully committed after restart',
    );
    again.kill('SIGTERM');
    const code = await new Promise((r) => again.once('exit', r));
    expect(code).toBe(0);
    const redelivered = await offsetsIn(second, stuckPartition);
    const expected = Array.from({ length: perPartition - Number(N) }, (_, i) => N + BigInt(i));
    expect(redelivered).toEqual(expected);
    // The healthy partition was committed before the crash and is not delivered again.
    expect(await offsetsIn(second, 0)).toEqual([]);
  });
});
