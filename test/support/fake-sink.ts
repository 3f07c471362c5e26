import type { ChangeEvent } from '../../src/model/change-event.ts';
import { OK, type Sink, type SinkResult } from '../../src/sink/sink.ts';

export type Answer = (batch: readonly ChangeEvent[], call: number) => readonly SinkResult[] | Promise<readonly SinkResult[]>;

/** The `id` key column of an event. */
export const idOf = (e: ChangeEvent) => Number(e.key?.['id']);

/** A sink whose every write is answered by `answer`; it keeps the ids of each batch it was asked to write. */
export function fakeSink(name: string, answer: Answer = (batch) => batch.map(() => OK)) {
  const calls: number[][] = [];
  const sink: Sink = {
    name,
    kind: 'fake',
    start: async () => {},
    close: async () => {},
    write: async (batch) => {
      calls.push(batch.map(idOf));
      return answer(batch, calls.length - 1);
    },
  };
  return { sink, calls };
}
