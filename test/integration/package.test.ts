import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createPackedProject, type PackedProject } from '../support/packed-project.ts';

// No servers: builds, packs and installs the package into a fresh project (offline, from the npm
// cache) and uses it there as a user would, from TypeScript and from JavaScript.

const TSCONFIG = JSON.stringify({
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] },
  include: ['*.ts'],
});

const HANDLERS = `
import { defineHandlers, dropFields, type Int64 } from 'cdc-router';

interface Customer { id: Int64; email: string; secret: string }

export default defineHandlers<{ 'public.customers': Customer }>()({
  tables: {
    'public.customers': {
      transforms: [
        function lowerEmail(event) {
          if (event.op === 'd' || event.op === 't') return event;
          if (event.after.email.endsWith('@example.invalid')) return null;
          return { ...event, after: { ...event.after, email: event.after.email.toLowerCase() } };
        },
        dropFields(['secret']),
      ],
    },
  },
});
`;

const CONFIG = `
kafka: { brokers: ['127.0.0.1:9'], topics: [shop.public.customers] }
sinks:
  out: { kind: file, path: out.jsonl }
routes:
  - table: public.customers
    sinks: [out]
handlers: ./handlers.ts
`;

describe('the packed package', () => {
  let project: PackedProject;

  beforeAll(async () => {
    project = await createPackedProject();
    await project.write('tsconfig.json', TSCONFIG);
    await project.write('handlers.ts', HANDLERS);
    await project.write('config.yaml', CONFIG);
  }, 300_000);

  afterAll(async () => {
    if (project) await rm(dirname(project.dir), { recursive: true, force: true });
  });

  it('type-checks a typed handler with tsc, and refuses a wrong one', async () => {
    const ok = await project.exec('npx', ['tsc', '-p', '.']);
    expect(ok.stdout + ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    // Without narrowing by op, `after` may be null (a delete): the package's types say so.
    await project.write('wrong.ts', HANDLERS.replace("if (event.op === 'd' || event.op === 't') return event;", ''));
    const wrong = await project.exec('npx', ['tsc', '-p', '.']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout).toMatch(/wrong\.ts\(\d+,\d+\): error TS18047: 'event\.after' is possibly 'null'/);
    await rm(`${project.dir}/wrong.ts`);
  });

  it('runs a handler from JavaScript (ESM) with cdc-router/testing', async () => {
    await project.write(
      'run-handler.mjs',
      `
import { defineHandlers, filter } from 'cdc-router';
import { changeEvent, runHandlers } from 'cdc-router/testing';
const handlers = defineHandlers()({
  tables: { 'public.customers': { transforms: [filter({ ops: ['c'] }), (e) => ({ ...e, after: { ...e.after, seen: true } })] } },
});
const out = runHandlers(handlers, [
  changeEvent({ table: 'public.customers', op: 'c', after: { id: 1 } }),
  changeEvent({ table: 'public.customers', op: 'u', after: { id: 1 } }),
]);
console.log(JSON.stringify(out.map((e) => e && e.after)));
`,
    );
    const out = await project.exec('node', ['run-handler.mjs']);
    expect(out.stderr).toBe('');
    expect(JSON.parse(out.stdout)).toEqual([{ id: 1, seen: true }, null]);
  });

  it('runs a config with its TypeScript handlers module from a plain Node script (createTestPipeline)', async () => {
    await project.write(
      'run-config.mjs',
      `
import { createTestPipeline, envelopeRecord } from 'cdc-router/testing';
const pipeline = await createTestPipeline('config.yaml');
const run = await pipeline.run([envelopeRecord({ table: 'customers', op: 'c', key: { id: 1 }, after: { id: 1, email: 'A@B', secret: 's' } })]);
console.log(JSON.stringify(run.writes.get('out').map((w) => w.row)));
`,
    );
    const out = await project.exec('node', ['run-config.mjs']);
    expect(out.stderr).toBe('');
    expect(JSON.parse(out.stdout)).toEqual([{ id: 1, email: 'a@b' }]);
  });

  it('runs the CLI: --help, and validate loading a TypeScript handlers module without a build step', async () => {
    const help = await project.exec('npx', ['cdc-router', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: cdc-router');
    const valid = await project.exec('npx', ['cdc-router', 'validate', 'config.yaml']);
    expect(valid.stderr).toBe('');
    expect(valid.stdout).toContain('config.yaml: ok (1 sink(s), 1 route(s)');
  });

  it('runs `cdc-router test` on the TypeScript handler: passes, and fails with a diff and exit code 1', async () => {
    const tests = (email: string) => `
config: ./config.yaml
tests:
  - name: lowercased, secret dropped
    input:
      - { table: public.customers, op: c, after: { id: 1, email: Ann@X.COM, secret: s } }
      - { table: public.customers, op: c, after: { id: 2, email: bot@example.invalid, secret: s } }
    expect:
      sinks:
        out: [ { upsert: { id: 1, email: ${email} } } ]
`;
    await project.write('pass.test.yaml', tests('ann@x.com'));
    const pass = await project.exec('npx', ['cdc-router', 'test', 'pass.test.yaml']);
    expect(pass.stdout).toContain('✓ lowercased, secret dropped');
    expect(pass.code).toBe(0);
    await project.write('fail.test.yaml', tests('Ann@X.COM'));
    const fail = await project.exec('npx', ['cdc-router', 'test', 'fail.test.yaml']);
    expect(fail.stdout).toContain('-     email: Ann@X.COM\n    +     email: ann@x.com');
    expect(fail.code).toBe(1);
    await project.write(
      'typed.test.ts',
      `import { defineTests } from 'cdc-router/testing';
export default defineTests({
  config: './config.yaml',
  tests: [{ name: 'from TypeScript', input: [{ table: 'public.customers', op: 'd', before: { id: 4 } }], expect: { sinks: { out: [{ delete: { id: 4 } }] } } }],
});
`,
    );
    const checked = await project.exec('npx', ['tsc', '-p', '.']);
    expect(checked.stdout + checked.stderr).toBe('');
    const typed = await project.exec('npx', ['cdc-router', 'test', 'typed.test.ts']);
    expect(typed.stdout).toContain('✓ from TypeScript');
    expect(typed.code).toBe(0);
  });
});
