import { readdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import { envelopeRecord, type RowOf } from '../testing/envelope.ts';
import { createTestPipeline, type TestPipeline, type TestRecord } from '../testing/harness.ts';
import { readTestFile, type TestCase, type TestInput } from '../testing/test-file.ts';
import { compareDeadLetters, compareWrites, type Mismatch } from './test-report.ts';

export interface TestRunOptions {
  /** The config for test files that do not name one. */
  readonly config?: string | undefined;
  readonly out: { write(text: string): unknown };
}

/** Exit codes: 0 every test passed, 1 a test failed, 2 a test file or its config cannot be used. */
export const TEST_EXIT = { passed: 0, failed: 1, unusable: 2 } as const;

function keyOf(input: Extract<TestInput, { table: string }>): Record<string, unknown> | null {
  if (input.key !== undefined) return input.key;
  const row = input.after ?? input.before;
  return row && Object.hasOwn(row, 'id') ? { id: row['id'] } : null;
}

const text = (v: string | Record<string, unknown> | null) => (v === null || typeof v === 'string' ? v : JSON.stringify(v));

function recordOf(input: TestInput): TestRecord {
  if ('topic' in input) return { ...input, key: text(input.key), value: text(input.value) };
  const dot = input.table.indexOf('.');
  // Values read from YAML (integers made exact by readTestFile) are JSON values.
  return envelopeRecord({
    op: input.op,
    schema: input.table.slice(0, dot),
    table: input.table.slice(dot + 1),
    key: keyOf(input) as RowOf | null,
    before: (input.before ?? null) as RowOf | null,
    after: (input.after ?? null) as RowOf | null,
    lsn: input.lsn,
    tsMs: input.ts_ms,
    withSchema: input.with_schema,
    prefix: input.prefix,
  });
}

async function runCase(pipeline: TestPipeline, test: TestCase): Promise<Mismatch[]> {
  const result = await pipeline.run(test.input.map(recordOf));
  const mismatches: Mismatch[] = [];
  for (const [sink, expected] of Object.entries(test.expect.sinks)) {
    const actual = result.writes.get(sink);
    if (actual === undefined) {
      mismatches.push({ what: `sink ${sink}`, diff: `  the config has no sink named "${sink}" (sinks: ${[...result.writes.keys()].join(', ')})` });
      continue;
    }
    const mismatch = compareWrites(sink, expected, actual);
    if (mismatch) mismatches.push(mismatch);
  }
  const dead = compareDeadLetters(test.expect.dead_letters, result.deadLetters);
  if (dead) mismatches.push(dead);
  return mismatches;
}

/** Test files given as files or folders (their *.yaml / *.yml files, sorted). */
async function expand(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (info?.isDirectory()) {
      const names = (await readdir(path)).filter((n) => /\.ya?ml$/.test(n)).sort();
      files.push(...names.map((n) => join(path, n)));
    } else files.push(path);
  }
  return files;
}

/**
 * `cdc-router test`: runs each test file's inputs through its config's real decoder, routes,
 * transforms and handlers into memory sinks and compares the writes and dead-letter entries.
 */
export async function runTestFiles(paths: readonly string[], options: TestRunOptions): Promise<number> {
  const { out } = options;
  const configs = new Map<string, Promise<TestPipeline>>();
  let passed = 0;
  let failed = 0;
  let unusable = 0;
  for (const file of await expand(paths)) {
    out.write(`${relative(process.cwd(), file) || file}\n`);
    try {
      const doc = await readTestFile(file);
      const configFile = doc.config !== undefined ? resolve(dirname(file), doc.config) : options.config && resolve(options.config);
      if (!configFile) throw new ConfigError([{ path: 'config', message: 'no config: give `config:` in the file or --config' }], file);
      let pipeline = configs.get(configFile);
      if (!pipeline) configs.set(configFile, (pipeline = loadConfig(configFile).then(createTestPipeline)));
      const ready = await pipeline;
      for (const test of doc.tests) {
        const mismatches = await runCase(ready, test);
        if (mismatches.length === 0) {
          passed++;
          out.write(`  ✓ ${test.name}\n`);
          continue;
        }
        failed++;
        out.write(`  ✗ ${test.name}\n`);
        for (const m of mismatches) out.write(`    ${m.what} (- expected, + actual):\n${m.diff.replace(/^/gm, '    ')}\n`);
      }
    } catch (err) {
      unusable++;
      out.write(`  ! ${err instanceof ConfigError ? err.message : errorMessage(err)}\n`.replace(/\n(?!$)/g, '\n    '));
    }
  }
  out.write(`\n${passed} passed, ${failed} failed${unusable > 0 ? `, ${unusable} file(s) unusable` : ''}\n`);
  return unusable > 0 ? TEST_EXIT.unusable : failed > 0 ? TEST_EXIT.failed : TEST_EXIT.passed;
}

export function registerTestCommand(program: Command): void {
  program
    .command('test')
    .description("run pipeline tests (YAML files: input records, expected writes per sink and dead-letter entries) against the config's routes, transforms and handlers with in-memory sinks; no servers")
    .argument('<files...>', 'test files, or folders of *.yaml test files')
    .option('-c, --config <file>', 'config for test files that do not name one')
    .action(async (files: string[], opts: { config?: string }) => {
      process.exitCode = await runTestFiles(files, { config: opts.config, out: process.stdout });
    });
}
