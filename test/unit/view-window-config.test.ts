import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { ConfigError, type ConfigIssue } from '../../src/errors.ts';
import { count, fromStream, fromTable, sum } from '../../src/view/dsl.ts';
import { planView } from '../../src/view/view-plan.ts';

const base = {
  kafka: { brokers: ['127.0.0.1:9092'], topics: ['a.public.visits'] },
  sinks: { out: { kind: 'file', path: '/tmp/x.jsonl' } },
  routes: [],
  state: { connection_string: 'postgres://localhost/test' },
};
const view = { from: { stream: 'public.visits' }, group_by: ['user'], aggregations: { n: { fn: 'count' } }, to: { sink: 'out', table: 'public.r' } };

async function issuesOf(views: Record<string, unknown>): Promise<ConfigIssue[]> {
  try {
    await resolveConfig({ ...base, views }, { env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  return [];
}

describe('session, sliding and global windows in the config and the DSL', () => {
  it('plans each kind from `views:`; the result key has window bounds except for the global window', async () => {
    const config = await resolveConfig(
      {
        ...base,
        views: {
          s: { ...view, window: { session: { gap: '5m' } }, late: { sink: 'out' } },
          l: { ...view, window: { sliding: { difference: '10s' } } },
          g: { ...view, window: { global: { trigger: { every: '1m' } } } },
        },
      },
      { env: {} },
    );
    const s = planView('s', config.views['s']!);
    expect(s.window).toEqual({ kind: 'session', gapMs: 300_000 });
    expect(s.keyColumns).toEqual(['user', 'window_start', 'window_end']);
    expect(s.late).toMatchObject({ sink: 'out', table: { id: 'public.r_late' } });
    expect(planView('l', config.views['l']!).window).toEqual({ kind: 'sliding', differenceMs: 10_000 });
    const g = planView('g', config.views['g']!);
    expect([g.window, g.trigger, g.keyColumns]).toEqual([{ kind: 'global' }, { kind: 'time', everyMs: 60_000 }, ['user']]);
  });

  it('refuses impossible combinations, each error naming its path', async () => {
    const issues = await issuesOf({
      table_sessions: { ...view, from: { table: 'public.visits' }, event_time: 'at', window: { session: { gap: '5m' } } },
      final_global: { ...view, window: { global: { trigger: { count: 10 } } }, emit: 'final' },
      bad_trigger: { ...view, window: { global: { trigger: { count: 0 } } } },
      late_sink: { ...view, window: { tumbling: '1m' }, late: { sink: 'nope' } },
      late_no_window: { ...view, late: { sink: 'out' } },
    });
    const paths = issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'views.table_sessions.window',
        'views.final_global.window.global',
        'views.bad_trigger.window.global.trigger.count',
        'views.late_sink.late.sink',
        'views.late_no_window.late',
      ]),
    );
    expect(issues.find((i) => i.path === 'views.table_sessions.window')?.message).toMatch(/read a stream/);
  });

  it('windowedBy takes session, sliding and global windows; a session window of a table is a problem', () => {
    const sessions = fromStream<{ user: string; amount: number; at: number }>('public.visits')
      .groupBy('user')
      .windowedBy({ session: { gap: '5m' } })
      .eventTime('at')
      .aggregate({ n: count(), total: sum('amount') })
      .to('out', { table: 'public.sessions' });
    expect(sessions.problems).toEqual([]);
    expect(planView('s', sessions.definition).keyColumns).toEqual(['user', 'window_start', 'window_end']);
    const global = fromStream<{ user: string }>('public.visits').groupBy('user').windowedBy({ global: { trigger: { count: 3 } } }).aggregate({ n: count() }).to('out', { table: 'public.g' });
    expect(global.definition.trigger).toEqual({ kind: 'count', every: 3 });
    // The result type of a global window has no window bounds.
    const key: keyof NonNullable<typeof global.rowType> = 'user';
    expect(key).toBe('user');
    const table = fromTable<{ user: string; at: number }>('public.visits').groupBy('user').windowedBy({ sliding: { difference: '1m' } }).eventTime('at').aggregate({ n: count() }).to('out', { table: 'public.x' });
    expect(table.problems).toEqual(['sliding windows read a stream: fromStream(…)']);
  });
});
