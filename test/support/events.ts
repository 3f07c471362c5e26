import { UNAVAILABLE, type ChangeEvent, type ColumnSchema, type Op, type Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';

export { UNAVAILABLE };

let offset = 0;

export function column(name: string, type: string, semantic?: string, parameters?: Record<string, string>): ColumnSchema {
  return { name, type, semantic, optional: true, parameters, items: undefined };
}

/** A decoded PostgreSQL change event, as the decoder would produce it, for sink tests. */
export function makeEvent(input: {
  op: Op;
  schema: string;
  table: string;
  key: Row | null;
  after?: Row | null;
  before?: Row | null;
  lsn: number | bigint;
  columns?: ColumnSchema[];
  partition?: number;
}): ChangeEvent {
  const o = String(offset++);
  return {
    kind: 'change',
    op: input.op,
    table: { id: `${input.schema}.${input.table}`, db: 'shop', schema: input.schema, table: input.table },
    key: input.key,
    before: input.before ?? null,
    after: input.after ?? null,
    source: {
      connector: 'postgresql',
      name: 'test',
      db: 'shop',
      schema: input.schema,
      table: input.table,
      tsMs: 1_700_000_000_000,
      snapshot: undefined,
      raw: { lsn: Number(input.lsn) },
    },
    position: position('postgres', [BigInt(input.lsn)]),
    tsMs: 1_700_000_000_005,
    kafka: { topic: `test.${input.schema}.${input.table}`, partition: input.partition ?? 0, offset: o, timestamp: Date.now() },
    columns: input.columns,
  };
}
