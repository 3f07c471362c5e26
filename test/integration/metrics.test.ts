import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/log.ts';
import { statusReportSchema } from '../../src/metrics/status-report.ts';
import { startService, type Service } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';
import { samples } from '../support/prometheus.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A port that was free a moment ago, for a test that must poll before the service says where it listens. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

async function http(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe('metrics, health endpoints and `status` on a real broker', () => {
  let kafka: KafkaFixture;
  let dir: string;
  const dlqTopics: string[] = [];
  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-metrics-'));
  });
  afterAll(async () => {
    await kafka.admin.deleteTopics({ topics: dlqTopics }).catch(() => undefined);
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('counts every outcome exactly, observes latencies, reaches lag 0, and serves readiness and status', async () => {
    const prefix = uniqueName('metrics');
    const topic = `${prefix}.public.items`;
    const dlqTopic = `${prefix}.dlq`;
    dlqTopics.push(dlqTopic);
    await kafka.createTopic(topic, 2);
    const tsMs = Date.now() - 1_000;
    let lsn = 100;
    const change = (op: 'c' | 'u' | 'd', id: number, name: string, table = 'items') => {
      const row = { id, name };
      return envelope({ op, table, key: { id }, before: op === 'c' ? null : row, after: op === 'd' ? null : row, lsn: (lsn += 8), tsMs, prefix });
    };
    const at = (partition: number, m: { key: string | null; value: string | null }) => ({ ...m, partition });
    await kafka.producer.send({
      topic,
      messages: [
        // Partition 0: two creates, an update, a delete and its tombstone.
        at(0, change('c', 1, 'one')),
        at(0, change('c', 2, 'two')),
        at(0, change('u', 1, 'uno')),
        at(0, change('d', 2, 'two')),
        at(0, { key: change('d', 2, 'two').key, value: null }),
        // Partition 1: a create, one the filter drops, a bad record (dead-lettered), an unrouted table, a create.
        at(1, change('c', 3, 'three')),
        at(1, change('c', 4, 'hidden')),
        at(1, { key: '{"id":9}', value: '{"op":"c", "after": {' }),
        at(1, change('c', 7, 'elsewhere', 'other')),
        at(1, change('c', 5, 'five')),
      ],
    });

    const group = uniqueName('metrics-group');
    const port = await freePort();
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: { out: { kind: 'file', path: join(dir, `${prefix}.jsonl`), fsync: false } },
      routes: [
        { table: 'public.items', transforms: [{ kind: 'filter', where: { field: 'name', not_equals: 'hidden' } }], sinks: ['out'] },
      ],
      retry: { initial_ms: 50, max_ms: 500 },
      dlq: { kind: 'kafka', topic: dlqTopic },
      metrics: { port, lag_interval_ms: 200 },
    });
    const base = `http://127.0.0.1:${port}`;

    // /readyz while the service starts: 503 (with the reason) until the group is joined, then 200.
    const readiness: { status: number; reasons: string[] }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          const r = await http(`${base}/readyz`);
          readiness.push({ status: r.status, reasons: (JSON.parse(r.body) as { reasons: string[] }).reasons });
          if (r.status === 200) return;
        } catch {
          // Not listening yet.
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();

    const service: Service = await startService(config, { logger: createLogger({ level: 'error' }) });
    try {
      await poller;
      expect(service.metrics?.port).toBe(port);
      expect(readiness[0]?.status).toBe(503);
      expect(readiness[0]?.reasons).toContain('consumer has not joined the group');
      expect(readiness.at(-1)).toEqual({ status: 200, reasons: [] });
      expect(await http(`${base}/healthz`)).toEqual({ status: 200, body: '{"status":"ok"}\n' });

      const ends = await kafka.endOffsets(topic);
      await waitUntil(
        async () => {
          const committed = await kafka.committed(group, topic);
          return [...ends].every(([p, e]) => committed.get(p) === e);
        },
        60_000,
        'commits to reach the end offsets',
      );
      const scrape = async () => samples((await http(`${base}/metrics`)).body);
      const lag = (m: Map<string, number>, p: number) => m.get(`cdc_router_consumer_lag_records{topic="${topic}",partition="${p}"}`);
      const m = await waitUntil(
        async () => {
          const s = await scrape();
          return lag(s, 0) === 0 && lag(s, 1) === 0 ? s : undefined;
        },
        30_000,
        'the lag gauge to reach 0',
      );

      const processed = (table: string, op: string, sink: string, outcome: string) =>
        m.get(`cdc_router_records_processed_total{table="${table}",op="${op}",sink="${sink}",outcome="${outcome}"}`);
      expect(processed('public.items', 'c', 'out', 'written')).toBe(4);
      expect(processed('public.items', 'u', 'out', 'written')).toBe(1);
      expect(processed('public.items', 'd', 'out', 'written')).toBe(1);
      expect(processed('public.items', 'c', '', 'filtered')).toBe(1);
      expect(processed('', 'tombstone', '', 'skipped')).toBe(1);
      expect(processed('public.other', 'c', '', 'skipped')).toBe(1);
      expect(processed('', '', '', 'dead_lettered')).toBe(1);
      expect([...m.keys()].filter((k) => k.startsWith('cdc_router_records_processed_total{'))).toHaveLength(7);
      expect(m.get(`cdc_router_records_consumed_total{topic="${topic}",partition="0"}`)).toBe(5);
      expect(m.get(`cdc_router_records_consumed_total{topic="${topic}",partition="1"}`)).toBe(5);
      expect(m.get('cdc_router_dlq_entries_total{stage="decode",sink=""}')).toBe(1);

      // Histograms: writes per sink, batch sizes summing to what was written, end-to-end latency for every
      // committed record (from the source time for the 6 changes that reached a sink), commits.
      expect(m.get('cdc_router_sink_write_duration_seconds_count{sink="out"}')).toBeGreaterThanOrEqual(1);
      expect(m.get('cdc_router_sink_batch_size_records_sum{sink="out"}')).toBe(6);
      expect(m.get(`cdc_router_kafka_to_commit_latency_seconds_count{topic="${topic}"}`)).toBe(10);
      expect(m.get(`cdc_router_source_to_commit_latency_seconds_count{topic="${topic}"}`)).toBe(6);
      expect(m.get(`cdc_router_source_to_commit_latency_seconds_sum{topic="${topic}"}`)).toBeGreaterThanOrEqual(6);
      expect(m.get(`cdc_router_commit_duration_seconds_count{topic="${topic}"}`)).toBeGreaterThanOrEqual(2);
      expect(m.get(`cdc_router_records_in_flight{topic="${topic}",partition="0"}`)).toBe(0);
      expect(m.get(`cdc_router_paused_partitions{topic="${topic}"}`)).toBe(0);
      expect(m.get('cdc_router_sink_circuit_state{sink="out"}')).toBe(0);
      expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);

      const status = statusReportSchema.parse(JSON.parse((await http(`${base}/status`)).body));
      expect(status).toMatchObject({
        group,
        ready: true,
        total_lag: 0,
        partitions: [
          { topic, partition: 0, committed: 5, end: 5, lag: 0, paused: false },
          { topic, partition: 1, committed: 5, end: 5, lag: 0, paused: false },
        ],
        dlq: { entries: 1, by_stage: { decode: 1 } },
      });
      expect(status.sinks).toEqual([expect.objectContaining({ name: 'out', health: 'ok', written: 6 })]);
      expect(status.rates.consumed_per_second).toBeGreaterThan(0);

      // The operator's command, as run from a shell.
      const child = spawn(process.execPath, ['bin/cdc-router.js', 'status', '--url', base], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const [code] = (await once(child, 'close')) as [number | null];
      expect(code, stderr).toBe(0);
      expect(stdout).toContain(`cdc-router at ${base}: group ${group}, ready`);
      expect(stdout).toMatch(new RegExp(`${topic.replace(/[.-]/g, '\\$&')}\\s+0\\s+5\\s+5\\s+0\\s+0`));
      expect(stdout).toMatch(new RegExp(`${topic.replace(/[.-]/g, '\\$&')}\\s+1\\s+5\\s+5\\s+0\\s+0`));
      expect(stdout).toContain('total lag 0');
      expect(stdout).toMatch(/out\s+ok\s+closed\s+6\s/);
      expect(stdout).toContain('dead-letter queue: 1 entry since start (decode 1)');
      expect(stdout).toMatch(/rates over the last 60 s, per second: consumed [\d.]+, written [\d.]+/);
    } finally {
      polling = false;
      await service.stop();
    }
    // Closed last, and closed: nothing listens any more.
    await expect(http(`${base}/healthz`)).rejects.toThrow();
  });
});
