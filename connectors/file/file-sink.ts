import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { SinkError, errorMessage } from '../../src/errors.ts';
import { encodePosition } from '../../src/model/position.ts';
import { stringifyKeepingDigits } from '../../src/model/raw-json.ts';
import { eventJsonReplacer } from '../../src/model/serialize.ts';
import { ExclusiveGate } from '../../src/sink/exclusive-gate.ts';
import { defineSink, OK, once, type Sink, type SinkResult } from '../../src/sink/sink.ts';

const configSchema = z
  .object({
    path: z.string().min(1).describe('JSON-lines file to append to (created with its folder)'),
    fsync: z.boolean().default(true).describe('acknowledge only after the data reached the disk'),
  })
  .strict();

/**
 * Appends one JSON line per change: the debugging sink. A line is acknowledged once written (and
 * synced, by default), so what the file holds is what the router may commit.
 */
export const fileSink = defineSink({
  kind: 'file',
  configSchema,
  create(name, config, { logger }): Sink {
    let handle: FileHandle | undefined;
    // Bytes known to end in a whole line: a failed append is cut back to it before the retry.
    let size = 0;
    // The write combiner may run two writes at once; FileHandle.appendFile splits a large string into
    // several write(2) calls, so concurrent appends would interleave inside a line. One at a time.
    const gate = new ExclusiveGate();
    const log = logger.child({ component: 'sink', sink: name, kind: 'file' });
    return {
      name,
      kind: 'file',
      async start() {
        await mkdir(dirname(config.path), { recursive: true });
        handle = await open(config.path, 'a');
        size = (await handle.stat()).size;
        log.info({ path: config.path }, 'file sink opened');
      },
      async write(batch) {
        if (!handle) throw new SinkError(name, 'write before start', { code: 'NOT_STARTED', retriable: false });
        // Per record: a change JSON cannot hold (nested deeper than the serializer's stack) fails
        // alone, not the batch it came in.
        const lines: string[] = [];
        const results = batch.map((e): SinkResult => {
          try {
            lines.push(
              stringifyKeepingDigits(
                {
                  op: e.op,
                  table: e.table.id,
                  key: e.key,
                  before: e.before,
                  after: e.after,
                  position: encodePosition(e.position),
                  ts_ms: e.tsMs,
                  topic: e.kafka.topic,
                  partition: e.kafka.partition,
                  offset: e.kafka.offset,
                },
                eventJsonReplacer,
              ) + '\n',
            );
            return OK;
          } catch (err) {
            return {
              ok: false,
              error: new SinkError(name, `table ${e.table.id}: cannot serialize the change: ${errorMessage(err)}`, {
                code: 'NOT_SERIALIZABLE',
                retriable: false,
                at: e.kafka,
                cause: err,
              }),
            };
          }
        });
        if (lines.length === 0) return results;
        const file = handle;
        const text = Buffer.from(lines.join(''), 'utf8');
        await gate.runExclusive(async () => {
          try {
            await file.appendFile(text);
            if (config.fsync) await file.datasync();
            size += text.length;
          } catch (err) {
            // A partial line would corrupt the file for every reader: cut it off (best effort).
            await file.truncate(size).catch(() => undefined);
            // Disk full or I/O errors may clear up; a retry is the safe choice.
            throw new SinkError(name, `cannot append to ${config.path}: ${String(err)}`, {
              code: 'FILE_WRITE',
              retriable: true,
              cause: err,
            });
          }
        });
        return results;
      },
      close: once(() =>
        gate.runExclusive(async () => {
          await handle?.close();
          handle = undefined;
        }),
      ),
    };
  },
});
