import { open, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { startService } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';

/**
 * Memory stays bounded when a sink is much slower than the topic. 120 MB of changes (30,000 records
 * of 4 KB) are produced as fast as the broker takes them, while the router writes them to a file
 * sink capped at 1,000 records/s. The consumer pauses each partition whose buffer is full
 * (max_buffered_records_per_partition: 2,000, two seconds of the sink's rate, so that fetching again
 * after a resume does not starve the sink) and resumes it as the sink catches up, so the process's
 * live memory (JS heap and Buffers, after a full GC) grows by less than HEAP_BOUND_MB, far less than
 * what the topic holds. Nothing is lost, and no commit ever passes what the sink acknowledged.
 */

const RECORDS = 30_000;
const PAYLOAD_BYTES = 4_000;
const RATE = 1_000;
/**
 * Buffered at most: 2 partitions x 2,000 records x 4 KB = 16 MB of values, plus their decoded
 * copies and the fetch responses they are slices of; the bound allows four times that.
 */
const HEAP_BOUND_MB = 64;
const PARTITIONS = 2;

// Live memory, not garbage: a full collection before each sample. Fetched record values are
// Buffers, outside the JS heap: `external` counts them.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const liveHeapMb = async () => {
  gc();
  // V8 frees the backing stores of dead ArrayBuffers (Buffers) on a background sweeper after the
  // collection: without this pause `external` would still count some that are garbage already.
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const m = process.memoryUsage();
  return (m.heapUsed + m.external) / 2 ** 20;
};

/** Reads the file sink's output as it grows: per partition, the offsets acknowledged so far. */
function ackReader(path: string) {
  let position = 0;
  let rest = '';
  const seen = new Map<number, Set<bigint>>();
  const prefix = new Map<number, bigint>();
  let lines = 0;
  return {
    /** Per partition, the first offset from 0 not yet acknowledged (everything below it is). */
    async upTo(): Promise<Map<number, bigint>> {
      const file = await open(path, 'r').catch(() => undefined);
      if (!file) return prefix;
      try {
        for (;;) {
          const buf = Buffer.alloc(1 << 20);
          const { bytesRead } = await file.read(buf, 0, buf.length, position);
          if (bytesRead === 0) break;
          position += bytesRead;
          const text = rest + buf.subarray(0, bytesRead).toString('utf8');
          const parts = text.split('\n');
          rest = parts.pop()!;
          for (const line of parts) {
            const { partition, offset } = JSON.parse(line) as { partition: number; offset: string };
            lines++;
            let s = seen.get(partition);
            if (!s) seen.set(partition, (s = new Set()));
            s.add(BigInt(offset));
            let p = prefix.get(partition) ?? 0n;
            while (s.delete(p)) p++;
            prefix.set(partition, p);
          }
        }
      } finally {
        await file.close();
      }
      return prefix;
    },
    get lines() {
      return lines;
    },
  };
}

describe('flow control: a rate-limited sink much slower than the topic', () => {
  let kafka: KafkaFixture;
  let dir: string;

  beforeAll(async () => {
    kafka = await kafkaFixture();
    dir = await mkdtemp(join(tmpdir(), 'cdc-flow-'));
  });
  afterAll(async () => {
    await kafka.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('pauses and resumes partitions, keeps the heap bounded, loses nothing, never commits early', async () => {
    const prefix = uniqueName('flow');
    const topic = `${prefix}.public.readings`;
    await kafka.createTopic(topic, PARTITIONS);
    const group = uniqueName('flow-group');
    const out = join(dir, 'out.jsonl');
    const config = await resolveConfig({
      kafka: {
        brokers: [BROKER],
        group_id: group,
        topics: [topic],
        max_buffered_records_per_partition: 2_000,
        max_bytes_per_partition: 524_288,
        partitions_consumed_concurrently: PARTITIONS,
      },
      sinks: { slow: { kind: 'file', path: out, fsync: false, rate_limit: { records_per_second: RATE, burst: 500 }, max_in_flight: 1 } },
      // The payload is decoded (it is what fills memory) but not written: the file stays small to read.
      routes: [{ table: 'public.readings', transforms: [{ kind: 'drop_fields', fields: ['payload'] }], sinks: ['slow'] }],
      max_batch_size: 500,
      metrics: { enabled: false },
    });
    const events = new RouterEvents();
    let throttledMs = 0;
    events.on('sink.throttled', (t) => (throttledMs += t.waitedMs));
    const service = await startService(config, { logger: createLogger({ level: 'error' }), events });
    const acks = ackReader(out);
    const violations: string[] = [];
    let pausedSeen = 0;
    let baseline = 0;
    let peak = 0;
    /** The peak once the producer (in this process too, with its own buffers) is done: the router's alone. */
    let drainPeak = 0;
    let producing = true;
    let sampling = true;
    const committed = async () => kafka.committed(group, topic);
    const sampler = (async () => {
      while (sampling) {
        // Committed first, acknowledgements after: acks only grow, so a commit past them is real.
        const c = await committed();
        const a = await acks.upTo();
        for (const [p, off] of c) if (off > (a.get(p) ?? 0n)) violations.push(`partition ${p}: committed ${off}, acknowledged below ${a.get(p) ?? 0n}`);
        if (service.consumer.paused().some((t) => t.partitions.length > 0)) pausedSeen++;
        const live = await liveHeapMb();
        peak = Math.max(peak, live);
        if (!producing) drainPeak = Math.max(drainPeak, live);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    try {
      await waitUntil(() => service.consumer.paused !== undefined, 1_000);
      baseline = await liveHeapMb();
      peak = baseline;
      // As fast as the broker takes them: 200 records (800 KB) per request, under the 1 MB batch limit.
      const payload = 'x'.repeat(PAYLOAD_BYTES);
      const t0 = Date.now();
      for (let i = 0; i < RECORDS; i += 200) {
        const messages = [];
        for (let j = i; j < Math.min(RECORDS, i + 200); j++) {
          const env = envelope({ op: 'c', table: 'readings', key: { id: j }, after: { id: j, payload }, lsn: 1_000 + j * 8, prefix });
          messages.push({ key: env.key, value: env.value, partition: j % PARTITIONS });
        }
        await kafka.producer.send({ topic, messages });
      }
      const producedIn = (Date.now() - t0) / 1000;
      producing = false;
      const end = await kafka.endOffsets(topic);
      await waitUntil(
        async () => {
          const c = await committed();
          return [...end].every(([p, e]) => c.get(p) === e);
        },
        RECORDS / RATE * 1000 + 60_000,
        'every record written and committed',
      );
      const drainedIn = (Date.now() - t0) / 1000;
      console.log(
        `flow control: produced ${RECORDS} records (${(RECORDS * PAYLOAD_BYTES) / 1e6} MB) in ${producedIn.toFixed(1)} s, ` +
          `written at ${(RECORDS / drainedIn).toFixed(0)} records/s (limit ${RATE}) in ${drainedIn.toFixed(1)} s; ` +
          `live memory ${baseline.toFixed(1)} MB -> peak ${peak.toFixed(1)} MB (${drainPeak.toFixed(1)} MB once produced); paused in ${pausedSeen} samples; throttled ${(throttledMs / 1000).toFixed(1)} s`,
      );
      // Far faster than the sink: the topic filled long before the sink got through it (so most of
      // the drain, and its memory samples, came with the rest waiting in Kafka).
      expect(producedIn).toBeLessThan(drainedIn / 2);
      expect(RECORDS / drainedIn).toBeLessThanOrEqual(RATE * 1.05);
    } finally {
      sampling = false;
      await sampler;
      await service.stop();
    }
    expect(violations).toEqual([]);
    expect(pausedSeen).toBeGreaterThan(0);
    expect(service.consumer.paused().flatMap((t) => t.partitions)).toEqual([]);
    expect(throttledMs).toBeGreaterThan(0);
    expect(drainPeak).toBeGreaterThan(0);
    expect(drainPeak - baseline).toBeLessThan(HEAP_BOUND_MB);
    // Nothing lost: every offset of every partition acknowledged (at least once).
    const a = await acks.upTo();
    const end = await kafka.endOffsets(topic);
    for (const [p, e] of end) expect(a.get(p)).toBe(e);
    expect(acks.lines).toBeGreaterThanOrEqual(RECORDS);
  }, 180_000);
});
