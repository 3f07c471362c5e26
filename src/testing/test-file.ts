import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { importUserModule } from '../config/import-module.ts';
import { ConfigError } from '../errors.ts';
import type { Op } from '../model/change-event.ts';

/*
 * The test files of `cdc-router test` (YAML, or a TypeScript / JavaScript module exporting
 * `defineTests(…)`): input records and the writes and dead-letter entries they must cause. See the
 * README's "Testing pipelines".
 */

const OPS = ['c', 'u', 'd', 'r', 't'] as const satisfies readonly Op[];
const row = z.record(z.unknown());

/** A change given as rows and an op, from which a valid Debezium PostgreSQL envelope is made. */
const changeInput = z
  .object({
    table: z.string().regex(/^[^.]+\.[^.]+$/, 'expected a table id <schema>.<table>'),
    op: z.enum(OPS),
    after: row.nullable().optional(),
    before: row.nullable().optional(),
    /** Default: `{ id }` of the row when it has an id column. */
    key: row.nullable().optional(),
    lsn: z.number().int().positive().optional(),
    ts_ms: z.number().int().nonnegative().optional(),
    /** Send the JsonConverter schema block too (column types guessed from the values). */
    with_schema: z.boolean().default(false),
    /** Topic prefix (Debezium's topic.prefix); the topic is <prefix>.<schema>.<table>. */
    prefix: z.string().min(1).default('test'),
  })
  .strict();

const jsonText = z.union([z.string(), row, z.null()]);

/** A Kafka record as Debezium wrote it; key and value as JSON text, or as YAML that is turned into JSON. */
const recordInput = z
  .object({
    topic: z.string().min(1),
    partition: z.number().int().nonnegative().optional(),
    offset: z.number().int().nonnegative().optional(),
    key: jsonText.default(null),
    value: jsonText,
  })
  .strict();

const stage = z.enum(['decode', 'route', 'transform', 'sink']);
const deadLetter = z.object({ code: z.string().min(1), stage: stage.optional(), table: z.string().optional() }).strict();

const upsert = z.object({ upsert: row, table: z.string().optional() }).strict();
const del = z.object({ delete: row.nullable(), table: z.string().optional() }).strict();
const truncate = z.object({ truncate: z.string() }).strict();

/**
 * Picks the schema by which of its keys an entry has (zod's plain union would report every
 * alternative's problems at once, which reads badly in a test file).
 */
function byKey<T extends Record<string, z.ZodTypeAny>>(alternatives: T) {
  const names = Object.keys(alternatives);
  return row.transform((entry, ctx): z.infer<T[keyof T]> => {
    const name = names.find((n) => Object.hasOwn(entry, n));
    if (name === undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `expected one of: ${names.join(', ')}` });
      return z.NEVER;
    }
    const parsed = alternatives[name]!.safeParse(entry);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) ctx.addIssue(issue);
      return z.NEVER;
    }
    return parsed.data as z.infer<T[keyof T]>;
  });
}

const testCase = z
  .object({
    name: z.string().min(1),
    input: z.array(byKey({ topic: recordInput, table: changeInput })).min(1),
    expect: z
      .object({
        /** Per sink name, its writes in order; sinks not named here are not checked. */
        sinks: z.record(z.array(byKey({ upsert, delete: del, truncate }))).default({}),
        /** The dead-letter entries, in input order; none when absent. */
        dead_letters: z.array(deadLetter).default([]),
      })
      .strict()
      .default({}),
  })
  .strict();

const testFileSchema = z
  .object({
    /** The config to test, relative to the test file; `--config` otherwise. */
    config: z.string().min(1).optional(),
    tests: z.array(testCase).min(1),
  })
  .strict();

export type TestFile = z.infer<typeof testFileSchema>;
/** A test file as written, with its defaults not yet applied. */
export type TestFileInput = z.input<typeof testFileSchema>;

/** The default export of a test file written in TypeScript or JavaScript (same shape as the YAML). */
export function defineTests(tests: TestFileInput): TestFileInput {
  return tests;
}

const MODULE = /\.(?:ts|mts|js|mjs)$/;
export type TestCase = z.infer<typeof testCase>;
export type ExpectedWrite = TestCase['expect']['sinks'][string][number];
export type ExpectedDeadLetter = z.infer<typeof deadLetter>;
export type TestInput = TestCase['input'][number];

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Integers are read exactly (YAML as bigints), then as numbers where that is exact, else as digit strings. */
export function exactIntegers(value: unknown): unknown {
  if (typeof value === 'bigint') return value >= -MAX_SAFE && value <= MAX_SAFE ? Number(value) : value.toString();
  if (Array.isArray(value)) return value.map(exactIntegers);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, exactIntegers(v)]));
  }
  return value;
}

/** Reads and validates a test file; every problem is reported with its path in the file. */
export async function readTestFile(file: string): Promise<TestFile> {
  const doc = MODULE.test(file) ? await importTests(file) : await readYaml(file);
  const parsed = testFileSchema.safeParse(exactIntegers(doc));
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      file,
    );
  }
  return parsed.data;
}

async function importTests(file: string): Promise<unknown> {
  let module: { default?: unknown };
  try {
    module = await importUserModule(resolve(file));
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot load the test module: ${(err as Error).message}` }], file);
  }
  if (module.default === undefined) throw new ConfigError([{ path: '', message: 'no default export (use defineTests)' }], file);
  return module.default;
}

async function readYaml(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot read the test file: ${(err as Error).message}` }], file);
  }
  try {
    return parseYaml(text, { intAsBigInt: true });
  } catch (err) {
    throw new ConfigError([{ path: '', message: `not valid YAML: ${(err as Error).message}` }], file);
  }
}
