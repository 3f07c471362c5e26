import { describe, expect, it } from 'vitest';
import {
  DeadLetterError,
  compareIds,
  deadLetterOf,
  selectEntries,
  type DeadLetter,
  type DeadLetterEntry,
  type DeadLetterQueue,
} from '../../src/dlq/dead-letter-queue.ts';
import { createDeadLetterHandler } from '../../src/dlq/failure-handler.ts';
import { DecodeError, SinkError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import type { RecordFailure } from '../../src/pipeline/contracts.ts';
import { AbortedError } from '../../src/retry/retrier.ts';

const logger = createLogger({ level: 'silent' });
const policy = { initialMs: 1, maxMs: 5, factor: 2, jitter: 0 };

const failure: RecordFailure = {
  record: { topic: 't', partition: 0, offset: '9', timestamp: 5, key: Buffer.from('k'), value: Buffer.from([0xff]), headers: {} },
  error: new SinkError('pg', 'refused', { code: 'REFUSED', retriable: false }),
  sink: 'pg',
  table: 'public.items',
  attempts: 2,
  firstFailureAt: 10,
  lastFailureAt: 20,
};

function fakeQueue(put: (letter: DeadLetter) => Promise<string>): DeadLetterQueue {
  return {
    kind: 'fake',
    target: 'fake',
    start: async () => undefined,
    put,
    list: async () => [],
    get: async () => undefined,
    mark: async () => undefined,
    close: async () => undefined,
  };
}

describe('dead-letter failure handler', () => {
  it('parks a record once the queue acknowledged it, retrying while the queue is away', async () => {
    let calls = 0;
    const stored: DeadLetter[] = [];
    const events = new RouterEvents();
    const lettered = events.waitFor('record.dead-lettered', () => true, 5_000);
    const handler = createDeadLetterHandler({
      dlq: fakeQueue(async (l) => {
        if (++calls < 3) throw new DeadLetterError('away', { code: 'KAFKA_UNAVAILABLE', retriable: true });
        stored.push(l);
        return '0-1';
      }),
      retryPolicy: policy,
      events,
      logger,
    });
    expect(await handler(failure, new AbortController().signal)).toBe(true);
    expect(calls).toBe(3);
    expect(stored[0]?.context).toMatchObject({ stage: 'sink', sink: 'pg', table: 'public.items', errorCode: 'REFUSED', attempts: 2 });
    expect(await lettered).toMatchObject({ topic: 't', partition: 0, offset: '9', id: '0-1', stage: 'sink', sink: 'pg' });
  });

  it('halts (false) when the queue refuses the entry for good', async () => {
    const handler = createDeadLetterHandler({
      dlq: fakeQueue(async () => {
        throw new DeadLetterError('too large', { code: 'MESSAGE_TOO_LARGE', retriable: false });
      }),
      retryPolicy: policy,
      events: new RouterEvents(),
      logger,
    });
    expect(await handler(failure, new AbortController().signal)).toBe(false);
  });

  it('gives up with AbortedError when the batch is aborted, even while a put hangs', async () => {
    const controller = new AbortController();
    const handler = createDeadLetterHandler({
      dlq: fakeQueue(() => new Promise<string>(() => undefined)),
      retryPolicy: policy,
      events: new RouterEvents(),
      logger,
    });
    const pending = handler(failure, controller.signal);
    setTimeout(() => controller.abort(new Error('shutdown')), 20);
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
  });
});

describe('dead-letter entries', () => {
  it('keeps the decode stage and no table for records that did not decode', () => {
    const l = deadLetterOf({
      ...failure,
      sink: undefined,
      table: undefined,
      error: new DecodeError('value is not valid JSON', { code: 'MALFORMED_JSON', at: { topic: 't', partition: 0, offset: '9' } }),
    });
    expect(l.context).toMatchObject({ stage: 'decode', sink: undefined, table: undefined, errorClass: 'DecodeError', errorCode: 'MALFORMED_JSON' });
    expect(l.context.errorMessage).toBe('t/0@9: value is not valid JSON');
    expect(l.value).toBe(failure.record.value);
  });

  it('filters by status (open by default), table, sink, stage, since, and limits oldest first', () => {
    const entry = (id: string, storedAt: number, over: Partial<DeadLetterEntry['context']>, status: DeadLetterEntry['status'] = 'open'): DeadLetterEntry => ({
      ...deadLetterOf(failure),
      id,
      status,
      storedAt,
      statusAt: undefined,
      context: { ...deadLetterOf(failure).context, ...over },
    });
    const all = [
      entry('0-10', 3, { table: 'a', lastFailureAt: 300 }),
      entry('0-2', 1, { table: 'b', stage: 'decode', sink: undefined, lastFailureAt: 100 }),
      entry('1-0', 2, { table: 'a', lastFailureAt: 200 }, 'discarded'),
    ];
    expect(selectEntries(all).map((e) => e.id)).toEqual(['0-2', '0-10']);
    expect(selectEntries(all, { status: 'all' }).map((e) => e.id)).toEqual(['0-2', '1-0', '0-10']);
    expect(selectEntries(all, { status: 'discarded' }).map((e) => e.id)).toEqual(['1-0']);
    expect(selectEntries(all, { table: 'a' }).map((e) => e.id)).toEqual(['0-10']);
    expect(selectEntries(all, { stage: 'decode' }).map((e) => e.id)).toEqual(['0-2']);
    expect(selectEntries(all, { sink: 'pg', status: 'all' }).map((e) => e.id)).toEqual(['1-0', '0-10']);
    expect(selectEntries(all, { since: 150, status: 'all' }).map((e) => e.id)).toEqual(['1-0', '0-10']);
    expect(selectEntries(all, { limit: 1 }).map((e) => e.id)).toEqual(['0-2']);
    expect(['0-10', '0-9', '1-0', '0-100'].sort(compareIds)).toEqual(['0-9', '0-10', '0-100', '1-0']);
  });
});
