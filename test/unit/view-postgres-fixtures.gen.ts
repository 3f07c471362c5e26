/**
 * Writes view-postgres-fixtures.json: what PostgreSQL prints for each aggregation over random
 * numeric, int8 and int4 groups, so that unit tests check our results against the real thing
 * without a server. Run by hand against a PostgreSQL (not part of the test suite):
 *   PGHOST=127.0.0.1 PGUSER=postgres PGDATABASE=test npx tsx test/unit/view-postgres-fixtures.gen.ts
 */
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { toDecimalString } from '../../src/view/core/exact.ts';
import { seededRandom as seeded } from '../support/random.ts';

const FIXTURE_KINDS = [
  'sum',
  'avg',
  'var_pop',
  'var_samp',
  'stddev_pop',
  'stddev_samp',
  'min',
  'max',
  'count',
  'count_distinct',
] as const;
type FixtureType = 'numeric' | 'int8' | 'int4';

function randomValue(r: ReturnType<typeof seeded>, type: FixtureType): string {
  if (type === 'numeric') {
    const m = BigInt(Math.floor((r.next() - 0.5) * 10 ** r.int(0, 14)));
    return toDecimalString({ m, s: r.int(0, 6) });
  }
  if (type === 'int4') return String(r.int(-100000, 100000));
  // int8: a third beyond 2^53, so sums and squares need exact arithmetic.
  if (r.next() < 0.3) return String(BigInt(r.int(-9, 9)) * 1_000_000_000_000_000_000n + BigInt(r.int(0, 1e9)));
  return String(r.int(-1e12, 1e12));
}

async function main(): Promise<void> {
  const client = new pg.Client();
  await client.connect();
  const version = ((await client.query('show server_version')).rows[0] as { server_version: string }).server_version;
  const r = seeded(20261202);
  const columns = FIXTURE_KINDS.map((k) => `${k === 'count_distinct' ? 'count(distinct x)' : `${k}(x)`}::text as c_${k}`);
  const cases: string[] = [];
  for (let round = 0; round < 120; round++) {
    const type = (['numeric', 'int8', 'int4'] as const)[round % 3] as FixtureType;
    const values = Array.from({ length: r.int(1, 10) }, () => randomValue(r, type));
    const sql = `select ${columns.join(', ')} from unnest($1::${type}[]) x`;
    const row = (await client.query(sql, [values])).rows[0] as Record<string, string | null>;
    const postgres = Object.fromEntries(FIXTURE_KINDS.map((k) => [k, row[`c_${k}`] ?? null]));
    cases.push(JSON.stringify({ type, values, postgres }));
  }
  await client.end();
  const about = `What PostgreSQL ${version} printed (::text) for each aggregation over unnest(values::type[]). Written by view-postgres-fixtures.gen.ts.`;
  writeFileSync(new URL('./view-postgres-fixtures.json', import.meta.url), `{"about": ${JSON.stringify(about)},\n"cases": [\n${cases.join(',\n')}\n]}\n`);
  console.log(`wrote ${cases.length} cases from PostgreSQL ${version}`);
}

await main();
