import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { prettyLogs } from '../../src/log.ts';

describe('log format', () => {
  it('is human-readable on a terminal under auto, JSON elsewhere and whenever json is asked for', () => {
    expect(prettyLogs('auto', true)).toBe(true);
    expect(prettyLogs('auto', false)).toBe(false);
    expect(prettyLogs('json', true)).toBe(false);
    expect(prettyLogs('json', false)).toBe(false);
    expect(prettyLogs('pretty', false)).toBe(true);
  });

  it('defaults to auto and refuses other values', () => {
    const minimal = { kafka: { brokers: ['localhost:9092'], group_id: 'g', topics: ['t'] }, sinks: {}, routes: [] };
    const parsed = configSchema.safeParse(minimal);
    expect(parsed.error?.issues ?? []).toEqual([]);
    expect(parsed.data?.log.format).toBe('auto');
    const bad = configSchema.safeParse({ ...minimal, log: { format: 'xml' } });
    expect(bad.success).toBe(false);
    expect(bad.success ? '' : JSON.stringify(bad.error.issues[0]?.path)).toBe('["log","format"]');
  });
});
