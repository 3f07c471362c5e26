import { describe, expect, it } from 'vitest';
import { SinkError } from '../../src/errors.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { OK, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { withWriteCombining } from '../../src/sink/write-combiner.ts';
import { makeEvent } from '../support/events.ts';

const ev = (id: number, op: 'c' | 't' = 'c') =>
  makeEvent({ op, schema: 's', table: 't', key: op === 't' ? null : { id }, after: op === 't' ? null : { id }, lsn: id });
const ids = (batch: readonly ChangeEvent[]) => batch.map((e) => (e.key ? Number(e.key['id']) : 't'));

/**
 * A sink whose writes stay open until released, recording each write's records. `refuse` marks ids
 * the sink rejects with a permanent whole-write error; `transport` makes every write fail retriably.
 */
function gatedSink(options: { refuse?: number[]; transport?: boolean } = {}) {
  const writes: (number | string)[][] = [];
  const gates: (() => void)[] = [];
  const sink: Sink = {
    name: 'gated',
    kind: 'test',
    start: async () => undefined,
    close: async () => undefined,
    async write(batch): Promise<readonly SinkResult[]> {
      writes.push(ids(batch));
      await new Promise<void>((release) => gates.push(release));
      if (options.transport) throw new SinkError('gated', 'connection reset', { code: 'T', retriable: true });
      if (batch.some((e) => options.refuse?.includes(Number(e.key?.['id'])))) {
        throw new SinkError('gated', 'request rejected', { code: 'P', retriable: false });
      }
      // A per-record outcome: odd ids fail, so each caller must get its own records' results back.
      return batch.map((e) =>
        Number(e.key?.['id']) % 2 === 1 ? { ok: false, error: new SinkError('gated', `odd ${String(e.key?.['id'])}`, { code: 'ODD', retriable: false }) } : OK,
      );
    },
  };
  /** Releases the open writes, one turn at a time, until none is left. */
  const settle = async () => {
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setImmediate(r));
      gates.splice(0).forEach((g) => g());
    }
  };
  return { sink, writes, settle };
}

const outcome = (results: readonly SinkResult[]) => results.map((r) => (r.ok ? 'ok' : r.error.message.replace('sink gated: ', '')));

describe('write combining', () => {
  it('writes at once when idle, and combines the batches that wait meanwhile into one write, results per batch', async () => {
    const { sink, writes, settle } = gatedSink();
    const combined = withWriteCombining(sink, { concurrency: 1, maxRecords: 100 });
    const first = combined.write([ev(2)]);
    const waiting = [combined.write([ev(4), ev(5)]), combined.write([ev(6)]), combined.write([ev(7), ev(8)])];
    await settle();
    expect(writes).toEqual([[2], [4, 5, 6, 7, 8]]);
    expect(outcome(await first)).toEqual(['ok']);
    expect((await Promise.all(waiting)).map(outcome)).toEqual([['ok', 'odd 5'], ['ok'], ['odd 7', 'ok']]);
  });

  it('runs up to `concurrency` writes at once and never splits a batch to fill one up to maxRecords', async () => {
    const { sink, writes, settle } = gatedSink();
    const combined = withWriteCombining(sink, { concurrency: 2, maxRecords: 3 });
    const all = [combined.write([ev(2)]), combined.write([ev(4)]), combined.write([ev(6), ev(8)]), combined.write([ev(10)]), combined.write([ev(12), ev(14), ev(16)])];
    await settle();
    await Promise.all(all);
    expect(writes).toEqual([[2], [4], [6, 8, 10], [12, 14, 16]]);
  });

  it('writes a batch holding a truncate alone', async () => {
    const { sink, writes, settle } = gatedSink();
    const combined = withWriteCombining(sink, { concurrency: 1, maxRecords: 100 });
    const all = [combined.write([ev(2)]), combined.write([ev(4)]), combined.write([ev(0, 't')]), combined.write([ev(6)]), combined.write([ev(8)])];
    await settle();
    await Promise.all(all);
    expect(writes).toEqual([[2], [4], ['t'], [6, 8]]);
  });

  it("writes batch by batch again after a permanent failure of a combined write: one batch's poison fails only that batch", async () => {
    const { sink, writes, settle } = gatedSink({ refuse: [9] });
    const combined = withWriteCombining(sink, { concurrency: 1, maxRecords: 100 });
    const first = combined.write([ev(2)]);
    const good = combined.write([ev(4), ev(6)]);
    const poisoned = combined.write([ev(8), ev(9)]).then(
      () => undefined,
      (err: unknown) => err,
    );
    await settle();
    await first;
    expect(outcome(await good)).toEqual(['ok', 'ok']);
    expect(await poisoned).toBeInstanceOf(SinkError);
    expect(String(await poisoned)).toMatch(/request rejected/);
    expect(writes).toEqual([[2], [4, 6, 8, 9], [4, 6], [8, 9]]);
  });

  it('hands a retriable failure of a combined write to every batch in it (each retries on its own)', async () => {
    const { sink, writes, settle } = gatedSink({ transport: true });
    const combined = withWriteCombining(sink, { concurrency: 1, maxRecords: 100 });
    const all = [combined.write([ev(2)]), combined.write([ev(4)]), combined.write([ev(6)])].map((p) =>
      p.then(
        () => 'resolved',
        (err: unknown) => (err instanceof SinkError && err.retriable ? 'retriable' : 'other'),
      ),
    );
    await settle();
    expect(await Promise.all(all)).toEqual(['retriable', 'retriable', 'retriable']);
    expect(writes).toEqual([[2], [4, 6]]);
  });
});
