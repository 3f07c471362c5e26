/**
 * Redis sink throughput against a bare batched write with the same driver (the ceiling).
 *
 *   npx tsx bench/sink-redis.ts   (env: REDIS_URL, ROWS, BATCH, ROUNDS, MODES=hash,json, ROWS_PER_SCRIPT)
 *
 * Both sides get the same generated rows (~1 KB, 10% of them on 100 hot keys), in batches of 5000;
 * each run writes under a fresh key prefix that is removed afterwards (not timed).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { redisSink } from '../connectors/redis/redis-sink.ts';
import { escapeGlob } from '../connectors/redis/key-layout.ts';
import { createLogger } from '../src/log.ts';
import type { ChangeEvent, Row } from '../src/model/change-event.ts';
import { makeEvent } from '../test/support/events.ts';

const url = new URL(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
const HOST = url.hostname;
const PORT = Number(url.port || 6379);
const ROWS = Number(process.env['ROWS'] ?? 50_000);
const BATCH = Number(process.env['BATCH'] ?? 5_000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const MODES = (process.env['MODES'] ?? 'hash,json').split(',') as ('hash' | 'json')[];
const ROWS_PER_SCRIPT = process.env['ROWS_PER_SCRIPT'] ? Number(process.env['ROWS_PER_SCRIPT']) : undefined;
const SCHEMA = 'bench';
const TABLE = 'orders';

function generate(): ChangeEvent[] {
  const filler = 'lorem ipsum dolor sit amet '.repeat(30).slice(0, 700);
  return Array.from({ length: ROWS }, (_, i) => {
    const id = i % 10 === 0 ? (i / 10) % 100 : 1_000 + i; // every 10th row hits one of 100 hot keys
    const row: Row = {
      id,
      customer: `customer-${i % 977}`,
      email: `user${i}@example.com`,
      status: i % 3 === 0 ? 'shipped' : 'pending',
      quantity: i % 17,
      price: `${(i % 10_000) / 100}.25`,
      created_at: '2024-05-01T12:34:56.123456',
      tags: ['a', 'b', i % 2 === 0 ? 'even' : 'odd'],
      note: null,
      description: filler,
    };
    return makeEvent({ op: i % 10 === 0 ? 'u' : 'c', schema: SCHEMA, table: TABLE, key: { id }, after: row, lsn: 1_000 + i });
  });
}

function hashValue(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** The ceiling: one pipeline per batch, one HSET (or SET) per row, no guard. */
async function bare(redis: Redis, mode: 'hash' | 'json', prefix: string, events: readonly ChangeEvent[]): Promise<void> {
  for (let s = 0; s < events.length; s += BATCH) {
    const pipe = redis.pipeline();
    for (const e of events.slice(s, s + BATCH)) {
      const key = `${prefix}${TABLE}:${String(e.key?.['id'])}`;
      const after = e.after ?? {};
      if (mode === 'json') pipe.set(key, JSON.stringify(after));
      else {
        const args: string[] = [];
        for (const col in after) {
          const v = after[col];
          if (v !== null && v !== undefined) args.push(col, hashValue(v));
        }
        pipe.hset(key, ...args);
      }
    }
    const replies = await pipe.exec();
    const failed = replies?.find(([err]) => err);
    if (failed) throw failed[0];
  }
}

async function cleanup(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 5_000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const events = generate();
  const bytes = events.reduce((n, e) => n + JSON.stringify(e.after).length, 0);
  const logger = createLogger({ level: 'warn' });
  const redis = new Redis({ host: HOST, port: PORT });
  const summary: Record<string, unknown> = { rows: ROWS, batch: BATCH, avgRowBytes: Math.round(bytes / ROWS) };
  const lines: string[] = ['| mode | sink rows/s | bare rows/s | ratio |', '| --- | --- | --- | --- |'];

  for (const mode of MODES) {
    const sinkRates: number[] = [];
    const bareRates: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const sinkPrefix = `cdc-bench:${randomUUID().slice(0, 8)}:`;
      const sink = redisSink.create('bench', redisSink.configSchema.parse({ host: HOST, port: PORT, key_prefix: sinkPrefix, mode, rows_per_script: ROWS_PER_SCRIPT }), { logger });
      await sink.start();
      let t0 = performance.now();
      for (let s = 0; s < events.length; s += BATCH) {
        const results = await sink.write(events.slice(s, s + BATCH));
        const bad = results.find((r) => !r.ok);
        if (bad && !bad.ok) throw bad.error;
      }
      sinkRates.push(ROWS / ((performance.now() - t0) / 1000));
      await sink.close();
      await cleanup(redis, sinkPrefix);

      const barePrefix = `cdc-bench:${randomUUID().slice(0, 8)}:`;
      t0 = performance.now();
      await bare(redis, mode, barePrefix, events);
      bareRates.push(ROWS / ((performance.now() - t0) / 1000));
      await cleanup(redis, barePrefix);
    }
    const a = median(sinkRates);
    const b = median(bareRates);
    lines.push(`| ${mode} | ${Math.round(a)} | ${Math.round(b)} | ${(a / b).toFixed(2)} |`);
    summary[mode] = { sinkRowsPerSec: sinkRates.map(Math.round), bareRowsPerSec: bareRates.map(Math.round), ratio: Number((a / b).toFixed(3)) };
  }
  redis.disconnect();
  console.log(lines.join('\n'));
  console.log(JSON.stringify({ bench: 'sink-redis', ...summary }));
}

await main();
