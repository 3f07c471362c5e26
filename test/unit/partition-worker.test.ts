import type { EachBatchPayload, Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import type { KafkaConfig } from '../../src/config/schema.ts';
import { createChangeConsumer, type HandledBatch } from '../../src/consume/consumer.ts';
import type { BatchControl } from '../../src/pipeline/contracts.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import type { RawRecord } from '../../src/model/change-event.ts';

// The consumer's partition workers over a fake kafkajs consumer: the test hands batches to eachBatch
// as the fetcher would, raises group events, and sees pauses, resumes and commit requests.

const TOPIC = 'items';
const EVENTS = { REBALANCING: 'rebalancing', GROUP_JOIN: 'group_join', CRASH: 'crash', END_BATCH_PROCESS: 'end_batch_process' } as const;

function fakeKafka() {
  const listeners = new Map<string, ((e: { payload: unknown }) => void)[]>();
  const commits: { partition: number; offset: string }[][] = [];
  const resumed: number[] = [];
  let eachBatch: ((payload: EachBatchPayload) => Promise<void>) | undefined;
  const consumer = {
    events: EVENTS,
    on: (event: string, listener: (e: { payload: unknown }) => void) => {
      listeners.set(event, [...(listeners.get(event) ?? []), listener]);
      return () => {};
    },
    connect: async () => {},
    subscribe: async () => {},
    run: async (options: { eachBatch: (payload: EachBatchPayload) => Promise<void> }) => {
      eachBatch = options.eachBatch;
    },
    commitOffsets: async (offsets: { topic: string; partition: number; offset: string }[]) => {
      commits.push(offsets.map(({ partition, offset }) => ({ partition, offset })));
    },
    pause: () => {},
    resume: (topics: { topic: string; partitions: number[] }[]) => resumed.push(...topics.flatMap((t) => t.partitions)),
    paused: () => [],
    seek: () => {},
    disconnect: async () => {},
  };
  const kafka = { consumer: () => consumer } as unknown as Kafka;

  /** Hands one fetched batch of `offsets` to the consumer; says whether the fetcher was told to pause. */
  async function fetch(partition: number, offsets: readonly number[]): Promise<{ paused: boolean }> {
    if (!eachBatch) throw new Error('consumer not running');
    let paused = false;
    const messages = offsets.map((o) => ({ offset: String(o), key: null, value: Buffer.from('{}'), timestamp: '0', attributes: 0, headers: {} }));
    await eachBatch({
      batch: { topic: TOPIC, partition, messages, lastOffset: () => String(offsets[offsets.length - 1]) },
      resolveOffset: () => {},
      pause: () => {
        paused = true;
        return () => {};
      },
    } as unknown as EachBatchPayload);
    return { paused };
  }
  const emit = (event: string, payload: unknown) => listeners.get(event)?.forEach((l) => l({ payload }));
  return { kafka, fetch, emit, commits, resumed };
}

/** A batch handler that holds each call until the test finishes it. */
function heldHandler() {
  const calls: { offsets: string[]; control: BatchControl; finish: (result: HandledBatch) => void }[] = [];
  const waiters: (() => void)[] = [];
  const handler = (records: readonly RawRecord[], control: BatchControl) =>
    new Promise<HandledBatch>((resolve) => {
      calls.push({ offsets: records.map((r) => r.offset), control, finish: resolve });
      waiters.splice(0).forEach((w) => w());
    });
  /** Resolves once the handler has been called `n` times. */
  const called = (n: number) => new Promise<void>((resolve) => {
    const check = () => (calls.length >= n ? resolve() : waiters.push(check));
    check();
  });
  return { handler, calls, called };
}

async function kafkaConfig(maxBuffered = 1000): Promise<KafkaConfig> {
  const config = await resolveConfig(
    {
      kafka: { brokers: ['127.0.0.1:9092'], topics: [TOPIC], max_buffered_records_per_partition: maxBuffered },
      sinks: { out: { kind: 'file', path: '/tmp/unused.jsonl' } },
      routes: [{ table: 'public.items', sinks: ['out'] }],
    },
    { env: {} },
  );
  return config.kafka;
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const done = (offset: number): HandledBatch => ({ commitOffset: BigInt(offset), halt: false });

async function start(maxBuffered?: number, mergeUpTo = 100) {
  const fake = fakeKafka();
  const held = heldHandler();
  const consumer = createChangeConsumer(fake.kafka, await kafkaConfig(maxBuffered), new RouterEvents(), createLogger({ level: 'silent' }), { mergeUpTo });
  await consumer.run(held.handler);
  return { ...fake, ...held, consumer };
}

describe('partition worker', () => {
  it('hands batches that queued behind a slow one over as one, up to mergeUpTo records', async () => {
    const t = await start(undefined, 5);
    await t.fetch(0, [0, 1]);
    await t.called(1);
    await t.fetch(0, [2, 3]);
    await t.fetch(0, [4, 5]);
    await t.fetch(0, [6, 7]);
    t.calls[0]!.finish(done(2));
    await t.called(2);
    // Whole batches while they fit: 2 + 2 records, the next 2 would make 6 > 5.
    expect(t.calls[1]!.offsets).toEqual(['2', '3', '4', '5']);
    t.calls[1]!.finish(done(6));
    await t.called(3);
    expect(t.calls[2]!.offsets).toEqual(['6', '7']);
    t.calls[2]!.finish(done(8));
    await flush();
    await flush();
    expect(t.commits.flat().at(-1)).toEqual({ partition: 0, offset: '8' });
  });

  it('pauses a partition whose queue is full and resumes it once its worker caught up to half', async () => {
    const t = await start(5);
    expect((await t.fetch(1, [0, 1])).paused).toBe(false);
    await t.called(1);
    expect((await t.fetch(1, [2, 3])).paused).toBe(false);
    // 6 records queued (the batch being written counts until it is done): the fetcher pauses.
    expect((await t.fetch(1, [4, 5])).paused).toBe(true);
    t.calls[0]!.finish(done(2));
    await t.called(2);
    // 4 still queued, above half of 5: still paused.
    expect(t.resumed).toEqual([]);
    t.calls[1]!.finish(done(6));
    await flush();
    expect(t.resumed).toEqual([1]);
  });

  it('refuses commits of a batch begun before a rebalance, and aborts it', async () => {
    const t = await start();
    await t.fetch(2, [0, 1, 2]);
    await t.called(1);
    const old = t.calls[0]!;
    old.control.progress(1n);
    await flush();
    expect(t.commits.flat()).toEqual([{ partition: 2, offset: '1' }]);
    t.emit(EVENTS.REBALANCING, {});
    expect(old.control.signal.aborted).toBe(true);
    // The partition may belong to another member now: nothing of the old generation is committed.
    old.control.progress(2n);
    old.finish(done(3));
    await flush();
    await flush();
    expect(t.commits.flat()).toEqual([{ partition: 2, offset: '1' }]);
    // The new generation's worker commits again.
    await t.fetch(2, [1, 2]);
    await t.called(2);
    t.calls[1]!.finish(done(3));
    await flush();
    await flush();
    expect(t.commits.flat().at(-1)).toEqual({ partition: 2, offset: '3' });
  });
});
