import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { fileSink } from '../../connectors/file/file-sink.ts';
import { withWriteCombining } from '../../src/sink/write-combiner.ts';
import { makeEvent } from '../support/events.ts';

// The real file system (no mock): the file sink's own guarantees about the lines it leaves behind.
describe('file sink', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps every line whole when large writes run at the same time', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cdc-file-sink-'));
    const path = join(dir, 'out.jsonl');
    const raw = fileSink.create('out', { path, fsync: false }, { logger: pino({ level: 'silent' }) });
    // Two writes at once, as the router runs sinks; each batch is over the 512 KiB that
    // FileHandle.appendFile writes per call, so unserialized appends would interleave mid-line.
    const sink = withWriteCombining(raw, { concurrency: 2, maxRecords: 4 });
    await sink.start();
    const big = 'x'.repeat(200_000);
    const batches = Array.from({ length: 8 }, (_, b) =>
      Array.from({ length: 4 }, (_, i) => {
        const id = b * 4 + i;
        return makeEvent({ op: 'c', schema: 's', table: 't', key: { id }, after: { id, blob: `${id}:${big}` }, lsn: id + 1 });
      }),
    );
    const results = await Promise.all(batches.map((batch) => sink.write(batch)));
    await sink.close();
    expect(results.flat().every((r) => r.ok)).toBe(true);
    const lines = (await readFile(path, 'utf8')).split('\n');
    expect(lines.pop()).toBe('');
    const ids = lines.map((l) => {
      const row = (JSON.parse(l) as { after: { id: number; blob: string } }).after;
      expect(row.blob).toBe(`${row.id}:${big}`);
      return row.id;
    });
    expect(ids.sort((a, b) => a - b)).toEqual(Array.from({ length: 32 }, (_, i) => i));
  });
});
