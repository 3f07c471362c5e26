import { isDeepStrictEqual } from 'node:util';
import { diffLines } from 'diff';
import { stringify as toYaml } from 'yaml';
import { isUnavailable } from '../model/change-event.ts';
import { UNAVAILABLE_JSON } from '../model/serialize.ts';
import type { DeadLetter } from '../testing/harness.ts';
import type { MemoryWrite } from '../testing/memory-sink.ts';
import type { ExpectedDeadLetter, ExpectedWrite } from '../testing/test-file.ts';
import { exactIntegers } from '../testing/test-file.ts';

/** A value as a test file can write it: integers beyond 2^53 as digit strings, the TOAST marker as {$unavailable: true}. */
function plain(value: unknown): unknown {
  if (isUnavailable(value)) return UNAVAILABLE_JSON;
  if (typeof value === 'bigint') return exactIntegers(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/** A write in the test file's form; `table` only when the expectations of that sink name tables. */
function writeEntry(write: MemoryWrite, withTable: boolean): ExpectedWrite {
  const table = withTable ? { table: write.table } : {};
  switch (write.op) {
    case 'upsert':
      return { upsert: plain(write.row) as Record<string, unknown>, ...table };
    case 'delete':
      return { delete: plain(write.key) as Record<string, unknown> | null, ...table };
    case 'truncate':
      return { truncate: write.table };
  }
}

/** Expected and actual lists as YAML, line by line: `-` expected only, `+` actual only. */
function diff(expected: readonly unknown[], actual: readonly unknown[]): string {
  const render = (list: readonly unknown[]) => (list.length === 0 ? '[]\n' : toYaml(list));
  return diffLines(render(expected), render(actual))
    .flatMap((part) => {
      const mark = part.added ? '+ ' : part.removed ? '- ' : '  ';
      return part.value.replace(/\n$/, '').split('\n').map((line) => `${mark}${line}`);
    })
    .join('\n');
}

/** One mismatch: what was compared and the diff (`-` expected, `+` actual). */
export interface Mismatch {
  readonly what: string;
  readonly diff: string;
}

export function compareWrites(sink: string, expected: readonly ExpectedWrite[], actual: readonly MemoryWrite[]): Mismatch | undefined {
  const withTable = expected.some((w) => 'table' in w && w.table !== undefined);
  const got = actual.map((w) => writeEntry(w, withTable));
  return isDeepStrictEqual(got, expected) ? undefined : { what: `sink ${sink}`, diff: diff(expected, got) };
}

export function compareDeadLetters(expected: readonly ExpectedDeadLetter[], actual: readonly DeadLetter[]): Mismatch | undefined {
  const stage = expected.some((d) => d.stage !== undefined);
  const table = expected.some((d) => d.table !== undefined);
  const got = actual.map((d) => ({
    code: d.code,
    ...(stage ? { stage: d.stage } : {}),
    ...(table && d.table !== undefined ? { table: d.table } : {}),
  }));
  if (isDeepStrictEqual(got, expected)) return undefined;
  // The messages say why each record failed: the first thing to read when an entry is unexpected.
  const reasons = actual.map((d) => `    input ${d.index}: ${d.code}: ${d.message}`).join('\n');
  return { what: 'dead letters', diff: `${diff(expected, got)}${reasons ? `\n  where:\n${reasons}` : ''}` };
}
