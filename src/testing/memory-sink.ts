import type { ChangeEvent, Row } from '../model/change-event.ts';
import { OK, type Sink, type SinkResult } from '../sink/sink.ts';

/** One write a sink was asked to make, in the order it was asked. */
export type MemoryWrite =
  | { readonly op: 'upsert'; readonly table: string; readonly key: Readonly<Row> | null; readonly row: Readonly<Row> }
  | { readonly op: 'delete'; readonly table: string; readonly key: Readonly<Row> | null }
  | { readonly op: 'truncate'; readonly table: string };

/** A sink that keeps what it is asked to write, for tests. */
export interface MemorySink extends Sink {
  /** Every write, in order (a change to a row becomes an upsert of its `after`). */
  readonly writes: readonly MemoryWrite[];
  /** The events as the sink received them, after the transforms. */
  readonly events: readonly ChangeEvent[];
  /** Forgets what was written. */
  clear(): void;
}

export function writeOf(event: ChangeEvent): MemoryWrite {
  const table = event.table.id;
  if (event.op === 't') return { op: 'truncate', table };
  if (event.op === 'd' || event.after === null) return { op: 'delete', table, key: event.key ?? event.before };
  return { op: 'upsert', table, key: event.key, row: event.after };
}

export function createMemorySink(name = 'memory'): MemorySink {
  const writes: MemoryWrite[] = [];
  const events: ChangeEvent[] = [];
  return {
    name,
    kind: 'memory',
    writes,
    events,
    start: async () => {},
    close: async () => {},
    clear() {
      writes.length = 0;
      events.length = 0;
    },
    async write(batch): Promise<readonly SinkResult[]> {
      for (const event of batch) {
        events.push(event);
        writes.push(writeOf(event));
      }
      return batch.map(() => OK);
    },
  };
}
