/**
 * Builds Debezium PostgreSQL envelopes as JsonConverter writes them (with or without the schema
 * block), for tests that produce their own events to a real broker.
 */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type RowOf = Record<string, Json>;

export interface EnvelopeInput {
  readonly op: 'c' | 'u' | 'd' | 'r' | 't';
  readonly schema?: string;
  readonly table: string;
  /** The record key; null makes a record without one (which the decoder refuses for every op but truncate). */
  readonly key: RowOf | null;
  readonly before?: RowOf | null;
  readonly after?: RowOf | null;
  readonly lsn: number;
  readonly txId?: number;
  readonly tsMs?: number;
  readonly withSchema?: boolean;
  readonly prefix?: string;
}

function connectType(v: Json): string {
  if (typeof v === 'number') return Number.isInteger(v) ? 'int64' : 'double';
  if (typeof v === 'boolean') return 'boolean';
  return 'string';
}

function structSchema(name: string, row: RowOf | null | undefined, field?: string): Record<string, Json> {
  const fields = Object.entries(row ?? {}).map(([f, v]) => ({ type: connectType(v), optional: true, field: f }));
  return { type: 'struct', fields, optional: true, name, ...(field ? { field } : {}) };
}

export function envelope(input: EnvelopeInput): { key: string; value: string } {
  const schemaName = input.schema ?? 'public';
  const prefix = input.prefix ?? 'test';
  const tsMs = input.tsMs ?? 1_700_000_000_000;
  const source = {
    version: '3.1.0.Final',
    connector: 'postgresql',
    name: prefix,
    ts_ms: tsMs,
    snapshot: input.op === 'r' ? 'true' : 'false',
    db: 'shop',
    sequence: JSON.stringify([String(input.lsn - 8), String(input.lsn)]),
    schema: schemaName,
    table: input.table,
    txId: input.txId ?? 1000,
    lsn: input.lsn,
    xmin: null,
  };
  const payload = {
    before: input.before ?? null,
    after: input.after ?? null,
    source,
    op: input.op,
    ts_ms: tsMs + 5,
    transaction: null,
  };
  // One Value schema serves before and after, as in Debezium: a column holding a fraction in either
  // image is a float64 in both.
  const rowSample: RowOf = { ...(input.before ?? {}), ...(input.after ?? input.key ?? {}) };
  for (const [k, v] of Object.entries(input.before ?? {})) {
    if (typeof v === 'number' && !Number.isInteger(v)) rowSample[k] = v;
  }
  const recordName = `${prefix}.${schemaName}.${input.table}`;
  if (!input.withSchema) return { key: JSON.stringify(input.key), value: JSON.stringify(payload) };
  const valueSchema = {
    type: 'struct',
    name: `${recordName}.Envelope`,
    optional: false,
    version: 2,
    fields: [
      structSchema(`${recordName}.Value`, rowSample, 'before'),
      structSchema(`${recordName}.Value`, rowSample, 'after'),
      {
        type: 'struct',
        field: 'source',
        optional: false,
        name: 'io.debezium.connector.postgresql.Source',
        fields: Object.keys(source).map((f) => ({
          type: f === 'ts_ms' || f === 'txId' || f === 'lsn' || f === 'xmin' ? 'int64' : 'string',
          optional: f !== 'connector',
          field: f,
        })),
      },
      { type: 'string', optional: false, field: 'op' },
      { type: 'int64', optional: true, field: 'ts_ms' },
    ],
  };
  const keySchema = { ...structSchema(`${recordName}.Key`, input.key), optional: false };
  return {
    key: JSON.stringify({ schema: keySchema, payload: input.key }),
    value: JSON.stringify({ schema: valueSchema, payload }),
  };
}

let lastLsn = 1_000;

/**
 * A Kafka record (topic `<prefix>.<schema>.<table>`, default prefix `test`) holding the envelope of
 * `input`; the LSN defaults to one more than the previous record's, so positions increase.
 */
export function envelopeRecord(input: Omit<EnvelopeInput, 'lsn'> & { readonly lsn?: number }): { topic: string; key: string; value: string } {
  const lsn = input.lsn ?? (lastLsn += 8);
  if (lsn > lastLsn) lastLsn = lsn;
  const { key, value } = envelope({ ...input, lsn });
  return { topic: `${input.prefix ?? 'test'}.${input.schema ?? 'public'}.${input.table}`, key, value };
}
