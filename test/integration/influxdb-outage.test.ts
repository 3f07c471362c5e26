import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { RouterEvents, type CircuitState } from '../../src/events.ts';
import { startService } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { selectPoints } from '../support/influxdb.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { startPrivateInfluxdb, type PrivateServer } from '../support/private-servers.ts';

/**
 * A router writes a steady stream of metric points (new points and updates of earlier ones) to a
 * private InfluxDB that is stopped mid-stream and started again on the same port. The router is
 * never restarted. Afterwards InfluxDB holds exactly the points the produced changes imply, nothing
 * was dead-lettered, and no commit passed an unacknowledged record while the server was away.
 */

const HOSTS = ['db-1', 'db 2', 'web,3'];
const DOWN_MS = 15_000;

describe('InfluxDB outage: no loss, no dead letters, no restart', () => {
  let kafka: KafkaFixture;
  let influx: PrivateServer | undefined;

  beforeAll(async () => {
    kafka = await kafkaFixture();
    influx = await startPrivateInfluxdb();
  });
  afterAll(async () => {
    await influx?.destroy();
    await kafka.close();
  });

  it('survives InfluxDB going away and coming back', async () => {
    const server = influx!;
    const prefix = uniqueName('influx-outage');
    const topic = `${prefix}.public.metrics`;
    const dlqTopic = `${prefix}.dlq`;
    await kafka.createTopic(topic, 3);
    const group = uniqueName('influx-outage-group');
    const database = prefix.replace(/-/g, '_');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: {
        tsdb: { kind: 'influxdb', url: server.url, database, timestamp_column: 'ts', timestamp_unit: 'ms', precision: 'ms', request_timeout_ms: 5_000 },
      },
      routes: [{ table: 'public.metrics', sinks: ['tsdb'] }],
      retry: { initial_ms: 100, max_ms: 1_000, circuit_open_ms: 1_000 },
      dlq: { kind: 'kafka', topic: dlqTopic },
      metrics: { enabled: false },
    });
    const events = new RouterEvents();
    const circuits: { state: CircuitState; at: number }[] = [];
    const deadLettered: string[] = [];
    const failed: string[] = [];
    events.on('sink.circuit', (c) => circuits.push({ state: c.state, at: Date.now() }));
    events.on('record.dead-lettered', (d) => deadLettered.push(`${d.offset}: ${d.error.message}`));
    events.on('record.failed', (f) => failed.push(`${f.offset}: ${f.error.message}`));
    events.on('partition.halted', (h) => failed.push(`halted ${h.offset}: ${h.error.message}`));
    const service = await startService(config, { logger: createLogger({ level: process.env['TEST_LOG_LEVEL'] === 'debug' ? 'warn' : 'silent' }), events });

    // The expected series: the last value written for each (host, ts) point.
    const expected = new Map<string, { value: number; n: number }>();
    const points: { host: string; ts: number }[] = [];
    let lsn = 1_000;
    let produced = 0;
    const change = () => {
      const update = points.length > 10 && produced % 4 === 0;
      const p = update ? points[(produced * 7) % points.length]! : { host: HOSTS[produced % HOSTS.length]!, ts: 1_700_000_000_000 + produced * 1_000 };
      if (!update) points.push(p);
      const row = { host: p.host, ts: p.ts, value: produced + 0.5, n: produced };
      expected.set(`${p.host}|${p.ts}`, { value: row.value, n: row.n });
      produced++;
      const env = envelope({ op: update ? 'u' : 'c', table: 'metrics', key: { host: p.host, ts: p.ts }, after: row, lsn: (lsn += 8), prefix, withSchema: true });
      return { key: env.key, value: env.value };
    };
    let producing = true;
    const producer = (async () => {
      while (producing) {
        await kafka.producer.send({ topic, messages: [change(), change(), change()] });
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // By partition 0..2 (the admin answers in no fixed order).
    const byPartition = (m: Map<number, bigint>) => [0, 1, 2].map((p) => m.get(p) ?? -1n);
    const committed = async () => byPartition(await kafka.committed(group, topic));
    const ends = async () => byPartition(await kafka.endOffsets(topic));
    const reached = async (target: bigint[]) => (await committed()).every((o, i) => o >= target[i]!);

    try {
      try {
        await waitUntil(async () => (await committed()).filter((o) => o > 0n).length === 3, 60_000, 'a first commit on every partition');
        const t0 = Date.now();
        await server.stop();
        await waitUntil(() => circuits.some((c) => c.state === 'open' && c.at >= t0), 30_000, 'the circuit to open');
        const frozen = await committed();
        await new Promise((r) => setTimeout(r, Math.max(0, t0 + DOWN_MS - Date.now())));
        // Nothing past an unacknowledged record was committed while the server was away.
        expect(await committed()).toEqual(frozen);
        expect((await ends()).some((e, i) => e > frozen[i]!)).toBe(true);
        await server.start();
        const backlog = await ends();
        await waitUntil(() => reached(backlog), 90_000, 'the backlog to be committed after the restart');
      } finally {
        producing = false;
        await producer;
      }
      const end = await ends();
      await waitUntil(() => reached(end), 60_000, 'commits to reach the end offsets').catch(async (err: unknown) => {
        throw new Error(`${String(err)}: committed ${(await committed()).join(',')} end ${end.join(',')}; failed ${failed.join('; ')}; dead-lettered ${deadLettered.slice(0, 5).join('; ')}`);
      });
    } finally {
      await service.stop();
    }

    expect(failed).toEqual([]);
    expect(deadLettered).toEqual([]);
    expect([...(await kafka.endOffsets(dlqTopic)).values()].every((o) => o === 0n)).toBe(true);
    expect(circuits.map((c) => c.state)).toContain('open');
    expect(circuits.at(-1)?.state).toBe('closed');
    expect(produced).toBeGreaterThan(300);

    const stored = await selectPoints('SELECT * FROM metrics', database, server.url);
    const got = new Map(stored.map((p) => [`${p.values['host']}|${BigInt(p.time) / 1_000_000n}`, { value: Number(p.values['value']), n: Number(p.values['n']) }]));
    expect(got.size).toBe(stored.length);
    const problems = [...expected].filter(([k, v]) => JSON.stringify(got.get(k)) !== JSON.stringify(v)).map(([k, v]) => `${k}: want ${JSON.stringify(v)}, got ${JSON.stringify(got.get(k))}`);
    expect(problems.slice(0, 20)).toEqual([]);
    expect(got.size).toBe(expected.size);
  }, 240_000);
});
