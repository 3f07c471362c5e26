/**
 * `npm run bench:rate-limit`: the achieved rate of a rate-limited sink against its limit, with the
 * real clock. BENCH_RATE_PARTITIONS writers (default 12, as many partitions) write batches of 1 to
 * BENCH_RATE_MAX_BATCH records (default 200, seeded) as fast as they are acknowledged, through the
 * service's wrappers (rate limiter inside the write combiner, max_in_flight 2) to a sink that answers
 * at once, for BENCH_RATE_SECONDS per case (default 10). Reports records/s and writes/s against the
 * limits, the time writes waited, and whether a limit was exceeded (over 2%, after the first full
 * bucket); exit code 1 when one was.
 * Not a test: timing on a shared machine belongs here, not in the unit tests.
 */
import { RouterEvents } from '../src/events.ts';
import type { ChangeEvent } from '../src/model/change-event.ts';
import { position } from '../src/model/position.ts';
import { withRateLimit } from '../src/sink/rate-limiter.ts';
import { OK, type Sink } from '../src/sink/sink.ts';
import type { RateLimits } from '../src/sink/token-bucket.ts';
import { withWriteCombining } from '../src/sink/write-combiner.ts';

const SECONDS = Number(process.env['BENCH_RATE_SECONDS'] ?? 10);
const PARTITIONS = Number(process.env['BENCH_RATE_PARTITIONS'] ?? 12);
const MAX_BATCH = Number(process.env['BENCH_RATE_MAX_BATCH'] ?? 200);

const CASES: readonly { name: string; limits: RateLimits }[] = [
  { name: 'records 5,000/s', limits: { recordsPerSecond: 5_000, requestsPerSecond: undefined, burst: undefined } },
  { name: 'records 50,000/s, burst 10,000', limits: { recordsPerSecond: 50_000, requestsPerSecond: undefined, burst: 10_000 } },
  { name: 'writes 20/s', limits: { recordsPerSecond: undefined, requestsPerSecond: 20, burst: undefined } },
  { name: 'records 2,000/s and writes 5/s', limits: { recordsPerSecond: 2_000, requestsPerSecond: 5, burst: undefined } },
];

function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const template: ChangeEvent = {
  kind: 'change',
  op: 'c',
  table: { id: 'public.t', db: 'db', schema: 'public', table: 't' },
  key: { id: 1 },
  before: null,
  after: { id: 1 },
  source: { connector: 'postgresql', name: 'bench', db: 'db', schema: 'public', table: 't', tsMs: 0, snapshot: undefined, raw: {} },
  position: position('postgres', [1n]),
  tsMs: 0,
  kafka: { topic: 't', partition: 0, offset: '0', timestamp: 0 },
  columns: undefined,
};

async function runCase(limits: RateLimits): Promise<{ records: number; writes: number; seconds: number; waitedS: number; firstBurst: number }> {
  let records = 0;
  let writes = 0;
  const inner: Sink = {
    name: 'bench',
    kind: 'bench',
    start: () => Promise.resolve(),
    close: () => Promise.resolve(),
    write(batch) {
      records += batch.length;
      writes++;
      return Promise.resolve(batch.map(() => OK));
    },
  };
  const events = new RouterEvents();
  let waitedMs = 0;
  events.on('sink.throttled', (t) => (waitedMs += t.waitedMs));
  const sink = withWriteCombining(withRateLimit(inner, limits, events), { concurrency: 2, maxRecords: 5_000 });
  const next = random(7);
  const start = performance.now();
  const until = start + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: PARTITIONS }, async () => {
      while (performance.now() < until) {
        const n = 1 + Math.floor(next() * MAX_BATCH);
        await sink.write(Array.from({ length: n }, () => template));
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  // What a full bucket lets through at once, on top of the rate.
  const firstBurst = limits.recordsPerSecond !== undefined ? (limits.burst ?? limits.recordsPerSecond) : 0;
  return { records, writes, seconds, waitedS: waitedMs / 1000, firstBurst };
}

const rows: string[] = [];
let exceeded = false;
for (const c of CASES) {
  const r = await runCase(c.limits);
  const recordsRate = (r.records - r.firstBurst) / r.seconds;
  const writesBurst = c.limits.requestsPerSecond === undefined ? 0 : Math.max(1, c.limits.requestsPerSecond);
  const writesRate = (r.writes - writesBurst) / r.seconds;
  const over =
    (c.limits.recordsPerSecond !== undefined && recordsRate > c.limits.recordsPerSecond * 1.02) ||
    (c.limits.requestsPerSecond !== undefined && writesRate > c.limits.requestsPerSecond * 1.02);
  exceeded ||= over;
  const pct = (v: number, limit: number | undefined) => (limit === undefined ? '-' : `${((v / limit) * 100).toFixed(1)}%`);
  rows.push(
    `| ${c.name} | ${recordsRate.toFixed(0)} | ${pct(recordsRate, c.limits.recordsPerSecond)} | ${writesRate.toFixed(1)} | ` +
      `${pct(writesRate, c.limits.requestsPerSecond)} | ${(r.records / r.writes).toFixed(0)} | ${r.waitedS.toFixed(1)} | ${over ? '**over**' : 'ok'} |`,
  );
}
console.log(`rate limiter, ${PARTITIONS} writers, batches of 1-${MAX_BATCH} records, ${SECONDS} s per case (both rates leave out the first full bucket)\n`);
console.log('| limit | records/s | of limit | writes/s | of limit | records/write | waited s | |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const row of rows) console.log(row);
if (exceeded) process.exitCode = 1;
