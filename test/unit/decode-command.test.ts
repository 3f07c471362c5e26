import { readFileSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runDecode } from '../../src/cli/decode-command.ts';
import type { DecoderOptions } from '../../src/decode/debezium.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/debezium/', import.meta.url));

/** A fixture's JSON text on one line, without re-serializing (big integers keep their digits). */
function oneLine(path: string): string {
  return readFileSync(FIXTURES + path, 'utf8').replace(/\n\s*/g, '');
}

function line(members: Record<string, string | number | null>, raw: Record<string, string> = {}): string {
  const parts = Object.entries(members).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
  for (const [k, v] of Object.entries(raw)) parts.push(`${JSON.stringify(k)}:${v}`);
  return `{${parts.join(',')}}`;
}

async function run(lines: string[], options?: DecoderOptions): Promise<{ code: number; out: string[]; err: string[] }> {
  const out = new PassThrough();
  const err = new PassThrough();
  const outChunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on('data', (c: Buffer) => outChunks.push(c));
  err.on('data', (c: Buffer) => errChunks.push(c));
  const code = await runDecode(Readable.from([lines.join('\n')]), out, err, options);
  const split = (chunks: Buffer[]) => Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== '');
  return { code, out: split(outChunks), err: split(errChunks) };
}

describe('cdc-router decode', () => {
  it('prints a change with table id, encoded position and converted values', async () => {
    const r = await run([
      line({ topic: 'dbserver1.inventory.customers' }, {
        key: oneLine('postgres/customers-key-1005.json'),
        value: oneLine('postgres/customers-insert.json'),
      }),
    ]);
    expect(r).toEqual({
      code: 0,
      err: [],
      out: [
        '{"op":"c","table":"inventory.customers","key":{"id":1005},"before":null,' +
          '"after":{"id":1005,"first_name":"Anne","last_name":"Kretchmar","email":"annek@noanswer.org"},' +
          '"position":"00000000016e9058","ts_ms":1730000000456}',
      ],
    });
  });

  it('prints UNAVAILABLE as {"$unavailable":true}', async () => {
    const r = await run([
      line({ topic: 'dbserver1.inventory.documents' }, {
        key: '{"id":42}',
        value: oneLine('postgres/documents-update-toast.json'),
      }),
    ]);
    const printed = JSON.parse(r.out[0]!) as { after: Record<string, unknown> };
    expect(printed.after['body']).toEqual({ $unavailable: true });
    expect(printed.after['tags']).toEqual({ $unavailable: true });
    expect(printed.after['title']).toBe('Quarterly report');
  });

  it('prints tombstones, heartbeats and transaction markers', async () => {
    const r = await run([
      line({ topic: 'dbserver1.inventory.customers', value: null }, { key: '{"id":1005}' }),
      line({ topic: '__debezium-heartbeat.dbserver1', key: null }, { value: oneLine('misc/heartbeat.json') }),
      line({ topic: 'dbserver1.transaction' }, { key: oneLine('misc/transaction-key.json'), value: oneLine('misc/transaction-begin.json') }),
      line({ topic: 'dbserver1.transaction' }, { value: oneLine('misc/transaction-end.json') }),
      line({ topic: 'customers' }),
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toEqual([
      '{"op":"tombstone","table":"inventory.customers","key":{"id":1005}}',
      '{"op":"heartbeat","ts_ms":1730001000000}',
      '{"op":"transaction","status":"BEGIN","id":"571:53195829","event_count":null}',
      '{"op":"transaction","status":"END","id":"571:53195829","event_count":2}',
      '{"op":"tombstone","table":null,"key":null}',
    ]);
  });

  it('defaults topic, partition and offset (the line index), and skips blank lines', async () => {
    const value = JSON.stringify({
      before: null,
      after: { id: 1 },
      source: { connector: 'sqlserver', db: 'shop', schema: 'dbo', table: 'orders' },
      op: 'c',
      ts_ms: 5,
    });
    const r = await run(['', line({ key: null }, { key: '{"id":1}', value }), '   ', line({ offset: '99' }, { key: '{"id":1}', value })]);
    expect(r.code).toBe(0);
    expect(r.out.map((l) => (JSON.parse(l) as { position: string }).position)).toEqual([
      '0000000000000001',
      '0000000000000063',
    ]);
  });

  it('hands the decoder the bytes of the line: nanosecond timestamps keep every digit', async () => {
    const r = await run([
      line({ topic: 'server1.INVENTORY.SENSOR_READINGS' }, {
        key: oneLine('misc/oracle-nanos-key.json'),
        value: oneLine('misc/oracle-nanos.json'),
      }),
    ]);
    expect((JSON.parse(r.out[0]!) as { after: Record<string, unknown> }).after['READ_AT']).toBe('2024-06-15T12:34:56.123456789');
  });

  it('reports bad lines as "line N: <problem>", goes on, and exits 1', async () => {
    const good = line({ topic: 'dbserver1.inventory.customers' }, { key: '{"id":1005}', value: oneLine('postgres/customers-insert.json') });
    const r = await run([
      good,
      '{"key":',
      '[1,2]',
      line({ topic: 'dbserver1.inventory.customers' }, { key: '{"id":1005}', value: '{"after":{"id":1}}' }),
      line({ vaule: null }),
      line({ partition: -1 }),
      line({ offset: 'x' }),
      line({ topic: 'dbserver1.inventory.customers' }, { key: '{"id":1005}', value: '{"op":"m","source":{"table":"t"}}' }),
      good,
    ]);
    expect(r.code).toBe(1);
    expect(r.out).toHaveLength(2);
    expect(r.err).toEqual([
      'line 2: not valid JSON: unexpected end of input at position 7',
      'line 3: expected a JSON object {"key", "value", "topic"?, "partition"?, "offset"?}',
      'line 4: dbserver1.inventory.customers/0@3: value has no "op": not a Debezium change envelope (already unwrapped?)',
      'line 5: unknown member "vaule" (expected key, value, topic, partition, offset, timestamp)',
      'line 6: "partition" must be a non-negative integer',
      'line 7: "offset" must be a non-negative integer (number or string)',
      'line 8: dbserver1.inventory.customers/0@7: unknown op "m", expected one of c, u, d, r, t',
    ]);
  });

  it('passes decoder options through', async () => {
    const r = await run([line({ topic: 'hb.server1' }, { value: '{"ts_ms":7}' })], { heartbeatTopicPrefix: 'hb.' });
    expect(r.out).toEqual(['{"op":"heartbeat","ts_ms":7}']);
  });

  it('returns 0 for empty input', async () => {
    expect(await run([])).toEqual({ code: 0, out: [], err: [] });
  });
});
