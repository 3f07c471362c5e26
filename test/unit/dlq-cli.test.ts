import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesView, runDlqDiscard, runDlqList, runDlqReplay, type DlqIo } from '../../src/cli/dlq-command.ts';
import { formatTable } from '../../src/cli/table.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';

function io(): DlqIo & { text(): { out: string; err: string } } {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
  out.on('data', (c: Buffer) => chunks.out.push(c));
  err.on('data', (c: Buffer) => chunks.err.push(c));
  return {
    out,
    err,
    text: () => ({ out: Buffer.concat(chunks.out).toString(), err: Buffer.concat(chunks.err).toString() }),
  };
}

const base = { kafka: { brokers: ['127.0.0.1:9092'], topics: ['t'], group_id: 'g1' }, sinks: { out: { kind: 'file', path: '/tmp/never' } } };

describe('dlq config', () => {
  it('has no dead-letter queue unless asked; a block without kind is Kafka with defaults', async () => {
    expect((await resolveConfig(base)).dlq).toEqual({ kind: 'none' });
    expect((await resolveConfig({ ...base, dlq: {} })).dlq).toEqual({
      kind: 'kafka',
      partitions: 1,
      replication_factor: -1,
      topic_config: {},
      read_timeout_ms: 60_000,
    });
    const bull = (await resolveConfig({ ...base, dlq: { kind: 'bullmq', queue: 'q' } })).dlq;
    expect(bull).toMatchObject({ kind: 'bullmq', queue: 'q', prefix: 'bull', redis: { url: 'redis://127.0.0.1:6379', tls: false } });
  });

  it('reports bad blocks with their paths', async () => {
    const err = await resolveConfig({ ...base, dlq: { kind: 'bullmq', queue: 'a:b', nope: 1 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).issues.map((i) => i.path);
    expect(paths).toContain('dlq.queue');
    expect(paths).toContain('dlq');
    const kind = await resolveConfig({ ...base, dlq: { kind: 'sqs' } }).catch((e: unknown) => e);
    expect((kind as ConfigError).issues.map((i) => i.path)).toEqual(['dlq.kind']);
  });
});

describe('cdc-router dlq (without servers)', () => {
  let dir: string;
  let noDlq: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cdc-dlq-cli-'));
    noDlq = join(dir, 'no-dlq.json');
    await writeFile(noDlq, JSON.stringify(base));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('exits 2 on bad options, before connecting to anything', async () => {
    for (const flags of [{ since: 'yesterday' }, { limit: '0' }, { status: 'gone' }, { stage: 'commit' }]) {
      const t = io();
      expect(await runDlqList({ config: noDlq, ...flags }, t)).toBe(2);
      expect(t.text().err).toMatch(/^--\w+ must be/);
    }
  });

  it('refuses to replay or discard everything by accident', async () => {
    const t = io();
    expect(await runDlqReplay(undefined, { config: noDlq }, t)).toBe(2);
    expect(t.text().err).toContain('give an entry id');
    expect(await runDlqDiscard('0-1', { config: noDlq, table: 'x' }, io())).toBe(2);
  });

  it('exits 2 when the config has no dead-letter queue, or is invalid', async () => {
    const t = io();
    expect(await runDlqList({ config: noDlq }, t)).toBe(2);
    expect(t.text().err).toContain('configures no dead-letter queue');
    const missing = io();
    expect(await runDlqList({ config: join(dir, 'absent.yaml') }, missing)).toBe(2);
  });

  it('shows bytes as text when they are UTF-8 text, else base64', () => {
    expect(bytesView(Buffer.from('{"id":1} é'))).toEqual({ utf8: '{"id":1} é' });
    expect(bytesView(Buffer.from([0xff, 0x00]))).toEqual({ base64: '/wA=' });
    expect(bytesView(Buffer.from('a\u0000b'))).toEqual({ base64: Buffer.from('a\u0000b').toString('base64') });
    expect(bytesView(null)).toBeNull();
    expect(formatTable(['ID', 'X'], [['0-1', 'a'], ['10-200', 'b']])).toBe('ID      X\n0-1     a\n10-200  b\n');
  });
});
