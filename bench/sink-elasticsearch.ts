/**
 * Elasticsearch sink throughput against a bare batched bulk write with the same client (the ceiling).
 * Needs the server: `bash scripts/elasticsearch.sh up`. Run: `npx tsx bench/sink-elasticsearch.ts`.
 * Env: ES_URL (http://127.0.0.1:9200), ROWS (50000), BATCH (5000), ROUNDS (3); MAX_DOCS and
 * CONCURRENCY override the sink's max_docs_per_request and max_concurrent_requests.
 */
import { randomUUID } from 'node:crypto';
import { Client } from '@elastic/elasticsearch';
import { pino } from 'pino';
import { configSchema, elasticsearchSink, indexNameFor } from '../connectors/elasticsearch/elasticsearch-sink.ts';
import type { ChangeEvent, Row } from '../src/model/change-event.ts';
import { makeEvent } from '../test/support/events.ts';

const NODE = process.env['ES_URL'] ?? 'http://127.0.0.1:9200';
const ROWS = Number(process.env['ROWS'] ?? 50_000);
const BATCH = Number(process.env['BATCH'] ?? 5_000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const HOT_KEYS = 200;
const HOT_SHARE = 0.05;

const run = randomUUID().slice(0, 8);
const es = new Client({ node: NODE });

/** Deterministic pseudo-random numbers, so every round and both sides see the same rows. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function makeRows(): { key: number; row: Row }[] {
  const rand = rng(42);
  const filler = 'lorem ipsum dolor sit amet consectetur adipiscing elit '.repeat(16).slice(0, 760);
  return Array.from({ length: ROWS }, (_, i) => {
    const key = rand() < HOT_SHARE ? Math.floor(rand() * HOT_KEYS) : HOT_KEYS + i;
    const row: Row = {
      id: key,
      name: `customer ${key}`,
      email: `customer${key}@example.com`,
      amount: `${Math.floor(rand() * 1e6)}.${String(Math.floor(rand() * 100)).padStart(2, '0')}`,
      created_at: `2024-0${1 + (i % 9)}-1${i % 10}T12:34:56.${String(i % 1e6).padStart(6, '0')}`,
      active: i % 3 === 0,
      tags: ['a', 'b', String(i % 7)],
      notes: `${i} ${filler}`,
    };
    return { key, row };
  });
}

async function dropIndex(pattern: string): Promise<void> {
  const rows = await es.cat.indices({ index: pattern, format: 'json', h: 'index' });
  const names = rows.map((r) => r.index).filter((n): n is string => typeof n === 'string');
  if (names.length > 0) await es.indices.delete({ index: names });
}

async function bare(round: number, rows: readonly { key: number; row: Row }[]): Promise<number> {
  const index = `bench_bare_${run}_${round}`;
  await es.indices.create({ index, settings: { number_of_replicas: 0 } });
  const t0 = performance.now();
  for (let start = 0; start < rows.length; start += BATCH) {
    const operations = rows.slice(start, start + BATCH).flatMap(({ key, row }) => [{ index: { _index: index, _id: String(key) } }, row]);
    const res = await es.bulk({ operations });
    if (res.errors) throw new Error('bare bulk had item errors');
  }
  const seconds = (performance.now() - t0) / 1000;
  await dropIndex(index);
  return rows.length / seconds;
}

async function viaSink(round: number, rows: readonly { key: number; row: Row }[]): Promise<number> {
  const schema = `bench_sink_${run}_${round}`;
  const config = configSchema.parse({
    nodes: [NODE],
    ...(process.env['MAX_DOCS'] ? { max_docs_per_request: Number(process.env['MAX_DOCS']) } : {}),
    ...(process.env['CONCURRENCY'] ? { max_concurrent_requests: Number(process.env['CONCURRENCY']) } : {}),
  });
  const sink = elasticsearchSink.create('bench', config, { logger: pino({ level: 'silent' }) });
  await sink.start();
  let lsn = 1_000;
  const events: ChangeEvent[] = rows.map(({ key, row }) =>
    makeEvent({ op: 'u', schema, table: 'customers', key: { id: key }, after: row, lsn: (lsn += 8) }),
  );
  const t0 = performance.now();
  for (let start = 0; start < events.length; start += BATCH) {
    const results = await sink.write(events.slice(start, start + BATCH));
    const failed = results.find((r) => !r.ok);
    if (failed && !failed.ok) throw failed.error;
  }
  const seconds = (performance.now() - t0) / 1000;
  await sink.close();
  await dropIndex(indexNameFor('{schema}.{table}', { id: `${schema}.customers`, db: 'shop', schema, table: 'customers' }));
  return rows.length / seconds;
}

async function main(): Promise<void> {
  await es.cluster.health({});
  const rows = makeRows();
  const bytes = rows.reduce((n, r) => n + JSON.stringify(r.row).length, 0) / rows.length;
  // Warm-up: JIT, connections, index creation paths.
  await bare(-1, rows.slice(0, BATCH));
  await viaSink(-1, rows.slice(0, BATCH));
  const results: { round: number; sink: number; bare: number }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate who goes first, so that server-side warm-up and merges do not favour one side.
    let s: number;
    let b: number;
    if (round % 2 === 0) {
      s = await viaSink(round, rows);
      b = await bare(round, rows);
    } else {
      b = await bare(round, rows);
      s = await viaSink(round, rows);
    }
    results.push({ round, sink: s, bare: b });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const sinkMedian = median(results.map((r) => r.sink));
  const bareMedian = median(results.map((r) => r.bare));
  console.log(`\n${ROWS} rows (~${Math.round(bytes)} B each, ${HOT_SHARE * 100}% on ${HOT_KEYS} hot keys), batches of ${BATCH}\n`);
  console.log('| round | sink rows/s | bare rows/s | ratio |');
  console.log('|---|---|---|---|');
  for (const r of results) console.log(`| ${r.round} | ${Math.round(r.sink)} | ${Math.round(r.bare)} | ${(r.sink / r.bare).toFixed(2)} |`);
  console.log(`| median | ${Math.round(sinkMedian)} | ${Math.round(bareMedian)} | ${(sinkMedian / bareMedian).toFixed(2)} |\n`);
  console.log(
    JSON.stringify({ bench: 'sink-elasticsearch', rows: ROWS, batch: BATCH, rounds: results, sink_rows_per_s: sinkMedian, bare_rows_per_s: bareMedian, ratio: sinkMedian / bareMedian }),
  );
  await es.close();
}

await main();
