import { describe, expect, it } from 'vitest';
import { interpolateEnv, resolveConfig } from '../../src/config/load.ts';
import { ConfigError, type ConfigIssue } from '../../src/errors.ts';

const base = {
  kafka: { brokers: ['127.0.0.1:9092'], topics: ['a.public.t'] },
  sinks: { out: { kind: 'file', path: '/tmp/x.jsonl' } },
  routes: [{ table: 'public.t', sinks: ['out'] }],
};

async function issuesOf(doc: unknown, env: NodeJS.ProcessEnv = {}): Promise<ConfigIssue[]> {
  try {
    await resolveConfig(doc, { env });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('accepts a minimal config and fills defaults', async () => {
    const c = await resolveConfig(base, { env: {} });
    expect(c.kafka.group_id).toBe('cdc-router');
    expect(c.kafka.from_beginning).toBe(true);
    expect(c.unrouted).toBe('skip');
    expect(c.sinks[0]).toMatchObject({ name: 'out', kind: 'file', config: { path: '/tmp/x.jsonl', fsync: true } });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reports every problem together, each with its path', async () => {
    const issues = await issuesOf({
      kafka: { brokers: ['no-port'], heartbeat_interval_ms: 50_000 },
      sinks: { out: { kind: 'file' }, other: { kind: 'nope' } },
      routes: [{ table: 'public.t', sinks: ['out', 'missing'], transforms: [{ kind: 'bogus' }, { kind: 'filter', ops: ['x'] }] }],
    });
    const paths = issues.map((i) => i.path);
    expect(paths).toContain('kafka.brokers.0');
    expect(paths).toContain('kafka.topics');
    expect(paths).toContain('kafka.heartbeat_interval_ms');
    // Phase one (shape) fails first; fix the shape and the kind-specific checks report together.
    const second = await issuesOf({
      ...base,
      sinks: { out: { kind: 'file' }, other: { kind: 'nope' } },
      routes: [{ table: 'public.t', sinks: ['out', 'missing'], transforms: [{ kind: 'bogus' }, { kind: 'filter', ops: ['x'] }] }],
    });
    const p2 = second.map((i) => i.path);
    expect(p2).toEqual(
      expect.arrayContaining(['sinks.out.path', 'sinks.other.kind', 'routes.0.transforms.0.kind', 'routes.0.transforms.1.ops.0', 'routes.0.sinks.1']),
    );
  });

  it('interpolates environment variables and reports unset ones', async () => {
    const c = await resolveConfig(
      { ...base, kafka: { ...base.kafka, sasl: { mechanism: 'plain', username: 'u', password: '${PW}' }, client_id: '${CID:-fallback}' } },
      { env: { PW: 's3cret' } },
    );
    expect(c.kafka.sasl?.password).toBe('s3cret');
    expect(c.kafka.client_id).toBe('fallback');
    const issues: ConfigIssue[] = [];
    interpolateEnv({ a: ['${NOPE}'] }, {}, issues);
    expect(issues).toEqual([{ path: 'a.0', message: 'environment variable NOPE is not set' }]);
  });

  it('rejects a bad topic pattern and both topics and pattern', async () => {
    const issues = await issuesOf({ ...base, kafka: { brokers: ['h:1'], topics: ['x'], topic_pattern: '(' } });
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(['kafka.topic_pattern']));
  });
});
