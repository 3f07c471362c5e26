import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTestFiles } from '../../src/cli/test-command.ts';
import { createTestPipeline, envelopeRecord } from '../../src/testing/index.ts';

const SHOP = resolve(import.meta.dirname, '../../examples/shop.yaml');
const EXAMPLE_TESTS = resolve(import.meta.dirname, '../../examples/tests');

async function run(files: string[], config?: string): Promise<{ code: number; output: string }> {
  let output = '';
  const code = await runTestFiles(files, { config, out: { write: (t: string) => (output += t) } });
  return { code, output };
}

describe('cdc-router test', () => {
  let dir: string;
  const file = async (name: string, text: string) => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cdc-router-test-command-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes the example tests against the example config (its handler and transforms included)', async () => {
    const { code, output } = await run([EXAMPLE_TESTS]);
    expect(output).toContain("✓ customers are written everywhere, with the handler's lowercased e-mail");
    expect(output).toContain('5 passed, 0 failed');
    expect(code).toBe(0);
  });

  it('fails with a diff of the writes, expected against actual', async () => {
    const path = await file(
      'fail.yaml',
      `tests:
  - name: wrong name
    input:
      - { table: public.customers, op: c, after: { id: 1, email: A@B.C, full_name: Ann, vip: false } }
      - { table: public.customers, op: d, before: { id: 2 } }
    expect:
      sinks:
        cache:
          - upsert: { id: 1, email: a@b.c, full_name: Anne, vip: false }
`,
    );
    const { code, output } = await run([path], SHOP);
    expect(code).toBe(1);
    expect(output).toContain(
      [
        '  ✗ wrong name',
        '    sink cache (- expected, + actual):',
        '      - upsert:',
        '          id: 1',
        '          email: a@b.c',
        '    -     full_name: Anne',
        '    +     full_name: Ann',
        '          vip: false',
        '    + - delete:',
        '    +     id: 2',
      ].join('\n'),
    );
    expect(output).toContain('0 passed, 1 failed');
  });

  it('checks dead-letter entries by code and stage, and an unexpected one fails the test with its reason', async () => {
    const path = await file(
      'dlq.yaml',
      `tests:
  - name: expected entry
    input:
      - { topic: shop.public.customers, key: '{"id":1}', value: 'not json' }
      - { table: public.customers, op: c, after: { id: 5, email: e@x, full_name: E, vip: true } }
    expect:
      dead_letters:
        - { code: MALFORMED_JSON, stage: decode }
  - name: unexpected entry
    input:
      - { table: public.customers, op: u, key: { id: 1 } }
`,
    );
    const { code, output } = await run([path], SHOP);
    expect(output).toContain('  ✓ expected entry');
    expect(output).toMatch(/✗ unexpected entry\n {4}dead letters \(- expected, \+ actual\):\n {4}- \[\]\n {4}\+ - code: MISSING_AFTER\n {6}where:\n {8}input 0: MISSING_AFTER: .*op "u" change has no "after" row/);
    expect(code).toBe(1);
  });

  it('reports a bad test file with the path of every problem, and exits 2', async () => {
    const path = await file(
      'bad.yaml',
      `tests:
  - name: bad
    input:
      - { table: customers, op: z }
      - { partition: 1 }
    expect:
      sinks: { cache: [ { upsert: 1 }, { merge: {} } ] }
`,
    );
    const { code, output } = await run([path], SHOP);
    expect(code).toBe(2);
    expect(output).toContain(`${path} is invalid (5 problems):`);
    expect(output).toContain('- tests.0.input.0.table: expected a table id <schema>.<table>');
    expect(output).toContain("- tests.0.input.0.op: Invalid enum value. Expected 'c' | 'u' | 'd' | 'r' | 't', received 'z'");
    expect(output).toContain('- tests.0.input.1: expected one of: topic, table');
    expect(output).toContain('- tests.0.expect.sinks.cache.0.upsert: Expected object, received number');
    expect(output).toContain('- tests.0.expect.sinks.cache.1: expected one of: upsert, delete, truncate');
  });

  it('says so when there is no config, or the test names a sink the config does not have', async () => {
    const noConfig = await file('noconfig.yaml', 'tests: [{ name: n, input: [{ table: public.t, op: t }], expect: {} }]\n');
    const missing = await run([noConfig]);
    expect(missing.code).toBe(2);
    expect(missing.output).toContain('- config: no config: give `config:` in the file or --config');
    const unknownSink = await file(
      'sink.yaml',
      'tests: [{ name: n, input: [{ table: public.customers, op: t }], expect: { sinks: { nope: [] } } }]\n',
    );
    const wrong = await run([unknownSink], SHOP);
    expect(wrong.code).toBe(1);
    expect(wrong.output).toContain('the config has no sink named "nope" (sinks: replica, cache, search, series)');
  });

  it('runs test files written in TypeScript (defineTests), with inputs computed in code', async () => {
    const path = await file(
      'computed.ts',
      `import { defineTests } from '${resolve(import.meta.dirname, '../../src/testing/index.ts')}';
const ids = [1, 2, 3];
export default defineTests({
  config: '${SHOP}',
  tests: [
    {
      name: 'three customers',
      input: ids.map((id) => ({ table: 'public.customers', op: 'c' as const, after: { id, email: 'C' + id + '@X', full_name: 'C', vip: false } })),
      expect: { sinks: { search: ids.map((id) => ({ upsert: { id, email: 'c' + id + '@x', full_name: 'C', vip: false } })) } },
    },
  ],
});
`,
    );
    const { code, output } = await run([path]);
    expect(output).toContain('✓ three customers');
    expect(code).toBe(0);
    const noDefault = await file('empty.ts', 'export const x = 1;\n');
    const empty = await run([noDefault], SHOP);
    expect(empty.code).toBe(2);
    expect(empty.output).toContain(`${noDefault} is invalid (1 problem):`);
    expect(empty.output).toContain('no default export (use defineTests)');
  });

  it('reads integers beyond 2^53 exactly', async () => {
    const path = await file(
      'big.yaml',
      `tests:
  - name: big
    input:
      - { table: public.order_lines, op: c, with_schema: true, after: { id: 9223372036854775807, qty: 2 } }
    expect:
      sinks:
        replica: [ { upsert: { id: 9223372036854775807, qty: 2 } } ]
`,
    );
    const { code, output } = await run([path], SHOP);
    expect(output).toContain('✓ big');
    expect(code).toBe(0);
  });
});

describe('createTestPipeline', () => {
  it('runs records through the config into memory sinks, and starts each run empty', async () => {
    const pipeline = await createTestPipeline(SHOP);
    const first = await pipeline.run([
      envelopeRecord({ table: 'customers', op: 'c', key: { id: 1 }, after: { id: 1, email: 'X@Y', full_name: 'X', vip: false } }),
      { topic: 'shop.public.customers', key: null, value: null },
    ]);
    expect(first.writes.get('replica')).toEqual([
      { op: 'upsert', table: 'public.customers', key: { id: 1 }, row: { id: 1, email: 'x@y', full_name: 'X', vip: false } },
    ]);
    expect(first.skipped).toEqual([{ index: 1, reason: 'tombstone' }]);
    const second = await pipeline.run([envelopeRecord({ table: 'orders', op: 't', key: null })]);
    expect(second.writes.get('replica')).toEqual([]);
    expect(second.skipped).toEqual([{ index: 0, reason: 'filtered' }]);
    expect(pipeline.sinks.get('replica')?.writes).toEqual([]);
  });
});
