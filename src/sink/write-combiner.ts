import { SinkError } from '../errors.ts';
import type { ChangeEvent } from '../model/change-event.ts';
import type { Sink, SinkResult } from './sink.ts';

export interface WriteCombiningOptions {
  /** Writes of one sink running at once; more waiting ones are combined. */
  readonly concurrency: number;
  /** A combined write takes whole waiting batches up to this many records. */
  readonly maxRecords: number;
}

interface Waiting {
  readonly batch: readonly ChangeEvent[];
  resolve(results: readonly SinkResult[]): void;
  reject(error: unknown): void;
}

const hasTruncate = (batch: readonly ChangeEvent[]) => batch.some((e) => e.op === 't');

/**
 * Group commit for a sink. Each partition writes its own batches, one at a time; with a dozen
 * partitions that is a dozen small writes at once, and a store pays per request (a transaction, a
 * bulk request and its fsync) as much as per row. Here at most `concurrency` writes of a sink run at
 * once; batches that arrive meanwhile wait and go out together as the next write. An idle sink
 * writes at once (no timer, no added latency); a busy one writes fewer, larger batches.
 *
 * Results are handed back per batch, so every record keeps its own outcome. A combined write that
 * fails as a whole with a permanent error is written again batch by batch, so that one partition's
 * poison record never fails another partition's records. A batch holding a truncate is written
 * alone: nothing may move across a truncate. Order per key holds: a key lives in one partition,
 * whose next batch is not written before this one is acknowledged.
 */
export function withWriteCombining(sink: Sink, options: WriteCombiningOptions): Sink {
  const queue: Waiting[] = [];
  let inFlight = 0;

  function take(): Waiting[] {
    const first = queue.shift()!;
    const group = [first];
    if (hasTruncate(first.batch)) return group;
    let total = first.batch.length;
    while (queue.length > 0) {
      const next = queue[0]!;
      if (total + next.batch.length > options.maxRecords || hasTruncate(next.batch)) break;
      group.push(queue.shift()!);
      total += next.batch.length;
    }
    return group;
  }

  async function alone(w: Waiting): Promise<void> {
    try {
      w.resolve(await sink.write(w.batch));
    } catch (err) {
      w.reject(err);
    }
  }

  async function run(group: readonly Waiting[]): Promise<void> {
    if (group.length === 1) return alone(group[0]!);
    const all = group.flatMap((w) => w.batch);
    let results: readonly SinkResult[];
    try {
      results = await sink.write(all);
    } catch (err) {
      // Transport trouble concerns every batch alike: each is retried by its own partition.
      if (err instanceof SinkError && err.retriable) {
        for (const w of group) w.reject(err);
        return;
      }
      for (const w of group) await alone(w);
      return;
    }
    if (results.length !== all.length) {
      for (const w of group) await alone(w);
      return;
    }
    let at = 0;
    for (const w of group) {
      w.resolve(results.slice(at, at + w.batch.length));
      at += w.batch.length;
    }
  }

  function pump(): void {
    while (inFlight < options.concurrency && queue.length > 0) {
      const group = take();
      inFlight++;
      void run(group).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  return {
    name: sink.name,
    kind: sink.kind,
    start: () => sink.start(),
    close: () => sink.close(),
    write(batch) {
      if (batch.length === 0) return Promise.resolve([]);
      return new Promise<readonly SinkResult[]>((resolve, reject) => {
        queue.push({ batch, resolve, reject });
        pump();
      });
    },
  };
}
