import { describe, expect, it } from 'vitest';
import { createDecoder } from '../../src/decode/debezium.ts';
import { SinkError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import type { RawRecord } from '../../src/model/change-event.ts';
import { createBatchProcessor, type BatchOutcome } from '../../src/pipeline/batch-processor.ts';
import type { BatchControl, RecordFailure } from '../../src/pipeline/contracts.ts';
import { createRouter } from '../../src/route/router.ts';
import { OK, type Sink } from '../../src/sink/sink.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { fakeSink, idOf, type Answer } from '../support/fake-sink.ts';

// The batch processor with fake sinks (scripted answers) and a fake consumer (the BatchControl it is
// given), over records the real decoder reads.

const TOPIC = 'test.public.items';

/** Records with offsets 100.. for ids 1..n; `bad` ids get a value that does not decode. */
function records(n: number, bad: readonly number[] = []): RawRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const id = i + 1;
    const { key, value } = envelope({ op: 'c', table: 'items', key: { id }, after: { id, name: `item ${id}` }, lsn: 1000 + id * 8 });
    return {
      topic: TOPIC,
      partition: 0,
      offset: String(100 + i),
      timestamp: 1_700_000_000_000,
      key: Buffer.from(key),
      value: Buffer.from(bad.includes(id) ? '{not json' : value),
      headers: {},
    };
  });
}

const permanent = (sink: string, why: string) => new SinkError(sink, why, { code: 'REFUSED', retriable: false });
const retriable = (sink: string, why: string) => new SinkError(sink, why, { code: 'BUSY', retriable: true });

/**
 * The consumer side: the signal it aborts on shutdown or revocation, and the commit points it is told,
 * during the batch (progress) and at its end (the outcome's, undefined when nothing new finished).
 */
function fakeConsumer() {
  const abort = new AbortController();
  const progress: bigint[] = [];
  const control: BatchControl = { signal: abort.signal, progress: (offset) => progress.push(offset) };
  const committed = (outcome: BatchOutcome) => outcome.commitOffset ?? progress.at(-1);
  return { control, progress, abort, committed };
}

function processor(sinks: readonly Sink[], onFailure: (f: RecordFailure) => boolean | Promise<boolean> = () => true, maxBatchSize = 100) {
  const events = new RouterEvents();
  const retries: string[] = [];
  events.on('sink.retry', ({ sink }) => retries.push(sink));
  const failures: RecordFailure[] = [];
  const byName = new Map(sinks.map((s) => [s.name, s]));
  const p = createBatchProcessor({
    decoder: createDecoder(),
    router: createRouter([{ table: 'public.items', transforms: [], sinks: [...byName.keys()] }], byName),
    unrouted: 'skip',
    maxBatchSize,
    retryPolicy: { initialMs: 1, maxMs: 2, factor: 2, jitter: 0 },
    events,
    logger: createLogger({ level: 'silent' }),
    onFailure: async (failure) => {
      failures.push(failure);
      return onFailure(failure);
    },
  });
  return { process: p.process, failures, retries };
}

describe('batch processor', () => {
  it('writes every record in partition order and commits past the batch', async () => {
    const a = fakeSink('a');
    const { process, failures } = processor([a.sink]);
    const consumer = fakeConsumer();
    const outcome = await process(records(5), consumer.control);
    expect(a.calls).toEqual([[1, 2, 3, 4, 5]]);
    expect(outcome).toMatchObject({ halted: undefined, aborted: false });
    expect(consumer.committed(outcome)).toBe(105n);
    expect(failures).toEqual([]);
  });

  it('bisects a permanent failure of the whole write until the record that causes it is alone', async () => {
    const a = fakeSink('a', (batch) => {
      if (batch.some((e) => idOf(e) === 3)) throw permanent('a', 'cannot encode id 3');
      return batch.map(() => OK);
    });
    const { process, failures } = processor([a.sink]);
    const consumer = fakeConsumer();
    const outcome = await process(records(6), consumer.control);
    // [1..6] fails: [1,2,3] fails too, so [1,2] is written and [3] fails alone; then [4,5,6] is written.
    expect(a.calls).toEqual([[1, 2, 3, 4, 5, 6], [1, 2, 3], [1, 2], [3], [4, 5, 6]]);
    expect(failures.map((f) => [f.record.offset, f.sink, f.error.code])).toEqual([['102', 'a', 'REFUSED']]);
    expect(consumer.committed(outcome)).toBe(106n);
    expect(outcome.halted).toBeUndefined();
  });

  it('retries only the records a sink answered with a retriable failure', async () => {
    const a = fakeSink('a', (batch, call) => batch.map((e) => (call === 0 && idOf(e) === 2 ? { ok: false, error: retriable('a', 'busy') } : OK)));
    const { process, failures, retries } = processor([a.sink]);
    const consumer = fakeConsumer();
    const outcome = await process(records(3), consumer.control);
    expect(a.calls).toEqual([[1, 2, 3], [2]]);
    expect(retries).toEqual(['a']);
    // After the first answer only offset 100 is finished on every sink: progress says so meanwhile.
    expect(consumer.progress[0]).toBe(101n);
    expect(consumer.committed(outcome)).toBe(103n);
    expect(failures).toEqual([]);
  });

  it('a record refused by several sinks fails once per sink, and is finished once all are parked', async () => {
    const refuse = (name: string): Answer => (batch) => batch.map((e) => (idOf(e) === 2 ? { ok: false, error: permanent(name, 'no') } : OK));
    const a = fakeSink('a', refuse('a'));
    const b = fakeSink('b', refuse('b'));
    const c = fakeSink('c');
    const { process, failures } = processor([a.sink, b.sink, c.sink]);
    const consumer = fakeConsumer();
    const outcome = await process(records(3), consumer.control);
    expect(failures.map((f) => [f.record.offset, f.sink]).sort()).toEqual([
      ['101', 'a'],
      ['101', 'b'],
    ]);
    expect(c.calls).toEqual([[1, 2, 3]]);
    expect(consumer.committed(outcome)).toBe(103n);
  });

  it('halts the partition at the first failure that is not parked, committing only what came before', async () => {
    const a = fakeSink('a', (batch) => batch.map((e) => (idOf(e) >= 3 ? { ok: false, error: permanent('a', 'no') } : OK)));
    const { process, failures } = processor([a.sink], () => false);
    const consumer = fakeConsumer();
    const outcome = await process(records(5, [2]), consumer.control);
    // The decode failure at offset 101 comes first: the sink failures after it are never handed over.
    expect(failures.map((f) => [f.record.offset, f.error.stage])).toEqual([['101', 'decode']]);
    expect(outcome.halted?.offset).toBe('101');
    expect(outcome.halted?.error.code).toBe('MALFORMED_JSON');
    expect(consumer.committed(outcome)).toBe(101n);
  });

  it('parks a decode failure and writes the records around it', async () => {
    const a = fakeSink('a');
    const { process, failures } = processor([a.sink]);
    const consumer = fakeConsumer();
    const outcome = await process(records(3, [2]), consumer.control);
    expect(a.calls).toEqual([[1, 3]]);
    expect(failures.map((f) => [f.record.offset, f.sink, f.table, f.error.stage])).toEqual([['101', undefined, undefined, 'decode']]);
    expect(consumer.committed(outcome)).toBe(103n);
  });

  it('stops retrying when the consumer aborts, and commits nothing past the unfinished record', async () => {
    const consumer = fakeConsumer();
    const a = fakeSink('a', (batch, call) => {
      if (call === 2) consumer.abort.abort('revoked');
      return batch.map((e) => (idOf(e) === 2 ? { ok: false, error: retriable('a', 'busy') } : OK));
    });
    const { process, failures } = processor([a.sink]);
    const outcome = await process(records(3), consumer.control);
    expect(outcome.aborted).toBe(true);
    expect(consumer.committed(outcome)).toBe(101n);
    expect(failures).toEqual([]);
    expect(a.calls.length).toBe(3);
  });

  it('splits a sink write into chunks of max_batch_size, in order', async () => {
    const a = fakeSink('a');
    const { process } = processor([a.sink], () => true, 2);
    const consumer = fakeConsumer();
    const outcome = await process(records(5), consumer.control);
    expect(a.calls).toEqual([[1, 2], [3, 4], [5]]);
    expect(consumer.committed(outcome)).toBe(105n);
  });
});
