import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStatus } from '../../src/cli/status-command.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import type { LagAdmin } from '../../src/metrics/lag-monitor.ts';
import { startMetrics, type MetricsServer } from '../../src/metrics/metrics-service.ts';
import { statusReportSchema } from '../../src/metrics/status-report.ts';

const logger = createLogger({ level: 'silent' });

const document = {
  kafka: { brokers: ['127.0.0.1:1'], topics: ['shop.public.items'], group_id: 'unit-group' },
  sinks: { out: { kind: 'file', path: '/tmp/never-written.jsonl' } },
  routes: [{ table: 'public.items', sinks: ['out'] }],
  metrics: { port: 0, lag_interval_ms: 100 },
};

const fakeAdmin: LagAdmin = {
  bounds: async () => [
    { partition: 0, low: 0n, high: 10n },
    { partition: 1, low: 0n, high: 3n },
  ],
  committed: async () => new Map([[0, 4n]]),
  close: async () => undefined,
};

function capture() {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks = { out: '', err: '' };
  out.on('data', (c: Buffer) => (chunks.out += c.toString()));
  err.on('data', (c: Buffer) => (chunks.err += c.toString()));
  return { io: { out, err }, chunks };
}

/** A port nothing listens on (free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

describe('metrics HTTP endpoints and the status command', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cdc-metrics-unit-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('answers /healthz, /readyz (503 with reasons, then 200), /metrics and /status', async () => {
    const events = new RouterEvents();
    const config = await resolveConfig(document, { env: {} });
    const metrics: MetricsServer = await startMetrics(config, { events, logger, connectAdmin: async () => fakeAdmin });
    try {
      expect(metrics.port).toBeGreaterThan(0);
      expect(metrics.url).toBe(`http://127.0.0.1:${metrics.port}`);
      expect(await get(`${metrics.url}/healthz`)).toMatchObject({ status: 200, body: '{"status":"ok"}\n' });

      let ready = await get(`${metrics.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body)).toEqual({ ready: false, reasons: ['sinks not started', 'consumer has not joined the group'] });
      metrics.markSinksStarted();
      ready = await get(`${metrics.url}/readyz`);
      expect(JSON.parse(ready.body)).toEqual({ ready: false, reasons: ['consumer has not joined the group'] });
      events.emit('group.joined', { memberId: 'member-1', assignment: { 'shop.public.items': [0, 1] } });
      ready = await get(`${metrics.url}/readyz`);
      expect(ready).toMatchObject({ status: 200, body: '{"ready":true,"reasons":[]}\n' });

      // The join triggers a fetch: lag = end - committed; partition 1 never committed, so from its first offset.
      let status = statusReportSchema.parse(JSON.parse((await get(`${metrics.url}/status`)).body));
      for (let i = 0; i < 50 && status.total_lag === null; i++) {
        await new Promise((r) => setTimeout(r, 20));
        status = statusReportSchema.parse(JSON.parse((await get(`${metrics.url}/status`)).body));
      }
      expect(status.partitions.map((p) => [p.partition, p.committed, p.end, p.lag])).toEqual([
        [0, 4, 10, 6],
        [1, null, 3, 3],
      ]);
      expect(status.total_lag).toBe(9);

      const scraped = await get(`${metrics.url}/metrics`);
      expect(scraped.status).toBe(200);
      expect(scraped.type).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(scraped.body).toContain('cdc_router_consumer_lag_records{topic="shop.public.items",partition="0"} 6');
      expect(scraped.body).toContain('cdc_router_sink_circuit_state{sink="out"} 0');
      expect(scraped.body).toContain('# TYPE process_cpu_seconds_total counter');

      expect((await get(`${metrics.url}/nope`)).status).toBe(404);
      expect((await get(`${metrics.url}/metrics`, { method: 'POST' })).status).toBe(405);
      expect(await get(`${metrics.url}/healthz`, { method: 'HEAD' })).toMatchObject({ status: 200, body: '' });

      // The command reads /status.
      const text = capture();
      expect(await runStatus({ url: metrics.url }, text.io)).toBe(0);
      expect(text.chunks.out).toContain(`cdc-router at ${metrics.url}: group unit-group, ready`);
      expect(text.chunks.out).toMatch(/shop\.public\.items\s+0\s+4\s+10\s+6/);
      expect(text.chunks.out).toMatch(/out\s+ok\s+closed\s+0/);
      expect(text.chunks.out).toContain('dead-letter queue: 0 entries since start');
      expect(text.chunks.out).toContain('total lag 9');
      const json = capture();
      expect(await runStatus({ url: `${metrics.url}/`, json: true }, json.io)).toBe(0);
      expect(statusReportSchema.parse(JSON.parse(json.chunks.out)).member_id).toBe('member-1');

      // Shutting down: not alive, not ready, the status says so.
      metrics.markStopping();
      expect((await get(`${metrics.url}/healthz`)).status).toBe(503);
      expect(JSON.parse((await get(`${metrics.url}/readyz`)).body)).toEqual({ ready: false, reasons: ['stopping'] });

      // The port is taken: a clear, typed error.
      const again = await resolveConfig({ ...document, metrics: { port: metrics.port } }, { env: {} });
      await expect(startMetrics(again, { events, logger, connectAdmin: async () => fakeAdmin })).rejects.toMatchObject({
        code: 'METRICS_LISTEN_FAILED',
        message: expect.stringContaining(`127.0.0.1:${metrics.port}`),
      });
    } finally {
      await metrics.close();
      await metrics.close();
    }
    const down = capture();
    expect(await runStatus({ url: metrics.url }, down.io)).toBe(1);
    expect(down.chunks.err).toMatch(new RegExp(`^cannot reach cdc-router at ${metrics.url}: .+ \\(is it running, with metrics enabled\\?\\)\n$`));
  });

  it('status: takes the address from --config, and refuses what cannot work', async () => {
    const disabled = join(dir, 'disabled.json');
    await writeFile(disabled, JSON.stringify({ ...document, metrics: { enabled: false } }));
    let c = capture();
    expect(await runStatus({ config: disabled }, c.io)).toBe(1);
    expect(c.chunks.err).toContain('metrics are disabled');

    const wildcard = join(dir, 'wildcard.json');
    const port = await closedPort();
    await writeFile(wildcard, JSON.stringify({ ...document, metrics: { host: '0.0.0.0', port } }));
    c = capture();
    expect(await runStatus({ config: wildcard }, c.io)).toBe(1);
    expect(c.chunks.err).toBe(
      `cannot reach cdc-router at http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port} (is it running, with metrics enabled?)\n`,
    );

    c = capture();
    expect(await runStatus({ config: wildcard, url: `http://127.0.0.1:${port}` }, c.io)).toBe(2);
    expect(c.chunks.err).toContain('use only one of --url, --config');
  });
});
