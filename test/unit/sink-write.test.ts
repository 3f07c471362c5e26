import { describe, expect, it } from 'vitest';
import { CdcError, SinkError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { writeToSink, type SinkWriteFailure } from '../../src/pipeline/sink-write.ts';
import { AbortedError } from '../../src/retry/retrier.ts';
import { OK, type Sink } from '../../src/sink/sink.ts';
import { changeEvent } from '../../src/testing/change-event.ts';
import { fakeSink, idOf } from '../support/fake-sink.ts';

// The one sink-write path, with a fake sink whose answers are scripted per call.

const events = (n: number) =>
  Array.from({ length: n }, (_, i) => changeEvent({ table: 'public.items', op: 'c', key: { id: i + 1 }, after: { id: i + 1 } }) as unknown as ChangeEvent);
const FAST = { initialMs: 1, maxMs: 2, factor: 2, jitter: 0 };

async function run(sink: Sink, items: readonly ChangeEvent[], options: { deadlineMs?: number; maxRecords?: number; signal?: AbortSignal } = {}) {
  const written: number[] = [];
  const failed: SinkWriteFailure<ChangeEvent>[] = [];
  let attempts = 0;
  const bus = new RouterEvents();
  const retries: number[] = [];
  bus.on('sink.retry', ({ attempt }) => retries.push(attempt));
  await writeToSink(sink, items, (e) => e, {
    retryPolicy: { ...FAST, deadlineMs: options.deadlineMs },
    signal: options.signal ?? new AbortController().signal,
    maxRecords: options.maxRecords,
    events: bus,
    onWritten: (e) => written.push(idOf(e)),
    onFailed: (f) => failed.push(f),
    onAttempt: () => attempts++,
  });
  return { written, failed: failed.map((f) => ({ id: idOf(f.item), code: f.error.code, message: f.error.message })), attempts, retries };
}

describe('writeToSink', () => {
  it('bisects a permanent whole-batch failure down to the one record that causes it, writing the rest in order', async () => {
    const { sink, calls } = fakeSink('fake', (batch) => {
      if (batch.some((e) => idOf(e) === 3)) throw new SinkError('fake', 'cannot encode', { code: 'ENCODE', retriable: false });
      return batch.map(() => OK);
    });
    const r = await run(sink, events(5));
    expect(r.written).toEqual([1, 2, 4, 5]);
    expect(r.failed).toEqual([{ id: 3, code: 'ENCODE', message: 'sink fake: cannot encode' }]);
    expect(calls).toEqual([[1, 2, 3, 4, 5], [1, 2, 3], [1, 2], [3], [4, 5]]);
  });

  it('writes again only the records answered with a retriable failure', async () => {
    const { sink, calls } = fakeSink('fake', (batch, call) =>
      batch.map((e) => (call === 0 && idOf(e) % 2 === 0 ? { ok: false, error: new SinkError('fake', 'busy', { code: 'BUSY', retriable: true }) } : OK)),
    );
    const r = await run(sink, events(4));
    expect(calls).toEqual([[1, 2, 3, 4], [2, 4]]);
    expect(r.written).toEqual([1, 3, 2, 4]);
    expect(r.failed).toEqual([]);
    expect(r.attempts).toBe(2);
    expect(r.retries).toEqual([0]);
  });

  it('fails records still retriable at the deadline each with its own last error, and fails permanent ones at once', async () => {
    const { sink } = fakeSink('fake', (batch) =>
      batch.map((e) => {
        const id = idOf(e);
        if (id === 1) return OK;
        if (id === 2) return { ok: false, error: new SinkError('fake', 'bad row', { code: 'REFUSED', retriable: false }) };
        return { ok: false, error: new SinkError('fake', `busy ${id}`, { code: `BUSY_${id}`, retriable: true }) };
      }),
    );
    const r = await run(sink, events(4), { deadlineMs: 20 });
    expect(r.written).toEqual([1]);
    expect(r.failed).toEqual([
      { id: 2, code: 'REFUSED', message: 'sink fake: bad row' },
      { id: 3, code: 'BUSY_3', message: 'sink fake: busy 3' },
      { id: 4, code: 'BUSY_4', message: 'sink fake: busy 4' },
    ]);
    expect(r.retries.length).toBeGreaterThan(0);
  });

  it('treats a result count that does not match the batch as a permanent failure of the write, and bisects it', async () => {
    const { sink, calls } = fakeSink('fake', (batch) => (batch.length > 1 ? [OK] : batch.map(() => OK)));
    const r = await run(sink, events(2));
    expect(calls).toEqual([[1, 2], [1], [2]]);
    expect(r.written).toEqual([1, 2]);
    expect(r.failed).toEqual([]);

    const { sink: none } = fakeSink('fake', () => []);
    const alone = await run(none, events(1));
    expect(alone.failed).toEqual([{ id: 1, code: 'RESULT_COUNT', message: 'sink fake: returned 0 results for 1 records' }]);
  });

  it('normalizes a throw that is not a SinkError to a permanent WRITE_THREW', async () => {
    const { sink, calls } = fakeSink('fake', () => {
      throw new TypeError('boom');
    });
    const r = await run(sink, events(1));
    expect(calls).toEqual([[1]]);
    expect(r.failed).toEqual([{ id: 1, code: 'WRITE_THREW', message: 'sink fake: write threw: boom' }]);
  });

  it('writes chunks of maxRecords, in order', async () => {
    const { sink, calls } = fakeSink('fake', (batch) => batch.map(() => OK));
    const r = await run(sink, events(5), { maxRecords: 2 });
    expect(calls).toEqual([[1, 2], [3, 4], [5]]);
    expect(r.written).toEqual([1, 2, 3, 4, 5]);
  });

  it('rejects with AbortedError when the signal fires during retries, failing nothing', async () => {
    const abort = new AbortController();
    const { sink } = fakeSink('fake', (batch) => {
      abort.abort();
      return batch.map(() => ({ ok: false, error: new SinkError('fake', 'busy', { code: 'BUSY', retriable: true }) as CdcError }));
    });
    await expect(run(sink, events(2), { signal: abort.signal })).rejects.toBeInstanceOf(AbortedError);
  });
});
