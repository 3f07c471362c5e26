import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { fileSink } from '../../connectors/file/file-sink.ts';
import { createDecoder } from '../../src/decode/debezium.ts';
import type { ChangeEvent } from '../../src/model/change-event.ts';
import { hasInexactNumber, keptJson, parseJsonKeepingDigits, stringifyKeepingDigits } from '../../src/model/raw-json.ts';
import { eventJsonReplacer, rowJson } from '../../src/model/serialize.ts';

const bigints = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);
const DOC = '{"big": 12345678901234567890, "pi": 3.14159265358979323846, "tiny": 1e-400, "huge": 1e400, "ok": 0.1, "s": "99999999999999999999"}';

describe('Json values keep their digits', () => {
  it('finds the numbers JSON.parse would change, and only those', () => {
    expect(hasInexactNumber('{"a": 0.1, "b": 1.50, "c": 123456789012345, "d": -1e-5, "e": 100000000000000000000}')).toBe(false);
    expect(hasInexactNumber('[9007199254740993]')).toBe(true);
    expect(hasInexactNumber('[1234567890.1234567]')).toBe(true);
    expect(hasInexactNumber('[1e400]')).toBe(true);
    expect(hasInexactNumber('[-1e-400]')).toBe(true);
    expect(hasInexactNumber('[5e-324]')).toBe(true);
    // Digits inside strings, escaped quotes included, are not numbers.
    expect(hasInexactNumber('["12345678901234567890", "a\\"12345678901234567890"]')).toBe(false);
  });

  it('writes the parsed text while the value is unchanged, the new value once a transform changes it', () => {
    const doc = parseJsonKeepingDigits(` ${DOC}\n`) as Record<string, unknown>;
    expect(keptJson(doc)).toBe(DOC);
    const row = { id: 7n, doc, other: { n: 1 } };
    expect(stringifyKeepingDigits(row, bigints)).toBe(`{"id":"7","doc":${DOC},"other":{"n":1}}`);
    expect(rowJson({ id: 1, doc })).toBe(`{"id":1,"doc":${DOC}}`);
    doc['ok'] = 0.2;
    expect(keptJson(doc)).toBeUndefined();
    expect(stringifyKeepingDigits({ doc }, bigints)).toBe(JSON.stringify({ doc }));
    // Values without inexact numbers are not tracked.
    expect(keptJson(parseJsonKeepingDigits('{"a": 1}'))).toBeUndefined();
  });

  it('leaves strings that look like its placeholder alone', () => {
    const doc = parseJsonKeepingDigits('[12345678901234567890]');
    const lookalike = '\u0001cdc-router-json-00000000-0000-0000-0000-000000000000-0\u0001';
    expect(JSON.parse(stringifyKeepingDigits({ s: lookalike, doc }, bigints).replace('12345678901234567890', '1'))).toEqual({ s: lookalike, doc: [1] });
  });

  it('from a Debezium record through the decoder to the file sink', async () => {
    const fixture = readFileSync(fileURLToPath(new URL('../fixtures/debezium/postgres/all-types.json', import.meta.url)), 'utf8');
    const envelope = JSON.parse(fixture) as { payload: { after: Record<string, unknown> } };
    envelope.payload.after['doc'] = DOC;
    const decoded = createDecoder().decode({
      topic: 'dbserver1.public.all_types',
      partition: 0,
      offset: '5',
      timestamp: 0,
      key: Buffer.from('{"id":1}'),
      value: Buffer.from(JSON.stringify(envelope)),
      headers: {},
    });
    if (decoded.kind !== 'change') throw new Error(`expected a change, got ${decoded.kind}`);
    const event: ChangeEvent = decoded;
    expect(rowJson(event.after!)).toContain(`"doc":${DOC}`);

    const dir = await mkdtemp(join(tmpdir(), 'cdc-raw-json-'));
    try {
      const path = join(dir, 'out.jsonl');
      const sink = fileSink.create('out', { path, fsync: false }, { logger: pino({ level: 'silent' }) });
      await sink.start();
      expect((await sink.write([event]))[0]!.ok).toBe(true);
      await sink.close();
      const line = (await readFile(path, 'utf8')).trim();
      expect(line).toContain(`"doc":${DOC}`);
      // The rest of the line is what the replacer makes of the event.
      expect(JSON.parse(line.replace(DOC, '{}'))).toMatchObject({ op: event.op, offset: '5', partition: 0 });
      expect(stringifyKeepingDigits({ after: event.after }, eventJsonReplacer)).toContain(`"doc":${DOC}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
