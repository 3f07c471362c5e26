import type { Op, Row } from '../model/change-event.ts';
import { position } from '../model/position.ts';
import { typedEventProblem, type TypedChangeEvent } from '../model/typed-event.ts';

export interface ChangeEventInput<R extends object> {
  /** Table id, `<schema>.<table>`. */
  readonly table: string;
  readonly op: Op;
  readonly after?: R | null;
  readonly before?: Partial<R> | null;
  /** Default: `{ id }` when the row (after, else before) has an `id` column; a truncate has none. */
  readonly key?: Row | null;
  /** The PostgreSQL LSN (the event's position); default: one more than the previous built event's. */
  readonly lsn?: number | bigint;
  readonly tsMs?: number;
  readonly topic?: string;
  readonly partition?: number;
  readonly offset?: number | string;
}

let lastLsn = 1_000n;

function defaultKey(row: object | null | undefined): Row | null {
  if (row === null || row === undefined || !Object.hasOwn(row, 'id')) return null;
  return { id: (row as { readonly id: unknown }).id };
}

/**
 * A decoded PostgreSQL change, as the decoder gives it to transforms and handlers, for unit tests of
 * a handler. Throws when the images do not fit the op (a create without `after`, a delete with one).
 */
export function changeEvent<R extends object = Row>(input: ChangeEventInput<R>): TypedChangeEvent<R> {
  const lsn = input.lsn === undefined ? (lastLsn += 8n) : BigInt(input.lsn);
  if (lsn > lastLsn) lastLsn = lsn;
  const dot = input.table.indexOf('.');
  if (dot <= 0) throw new RangeError(`changeEvent: table "${input.table}" is not <schema>.<table>`);
  const schema = input.table.slice(0, dot);
  const table = input.table.slice(dot + 1);
  const after = input.after ?? null;
  const before = input.before ?? null;
  const tsMs = input.tsMs ?? 1_700_000_000_000;
  const event = {
    kind: 'change' as const,
    op: input.op,
    table: { id: input.table, db: 'test', schema, table },
    key: input.key !== undefined ? input.key : input.op === 't' ? null : defaultKey(after ?? before),
    before,
    after,
    source: { connector: 'postgresql', name: 'test', db: 'test', schema, table, tsMs, snapshot: undefined, raw: { lsn: Number(lsn) } },
    position: position('postgres', [lsn]),
    tsMs: tsMs + 5,
    kafka: { topic: input.topic ?? `test.${input.table}`, partition: input.partition ?? 0, offset: String(input.offset ?? 0), timestamp: tsMs + 10 },
    columns: undefined,
  };
  const problem = typedEventProblem(event as Parameters<typeof typedEventProblem>[0]);
  if (problem !== undefined) throw new RangeError(`changeEvent: ${problem}`);
  return event as unknown as TypedChangeEvent<R>;
}
