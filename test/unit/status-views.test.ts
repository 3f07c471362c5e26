import { describe, expect, it } from 'vitest';
import { formatViews } from '../../src/cli/status-command.ts';
import { viewLag, type ViewReport } from '../../src/cli/views-command.ts';

const report = (offsets: { lag: number | null }[], watermark: string | null): ViewReport => ({
  input: { stream: 'public.visits' },
  to: { sink: 'pg', table: 'public.sessions' },
  results: { output: 'outbox' },
  rows: 0,
  groups: 4,
  outbox: 1,
  watermarkMs: watermark === null ? null : Date.parse(watermark),
  watermark,
  offsets: offsets.map((o, i) => ({ topic: 't', partition: i, next: '10', lag: o.lag })),
});

describe('cdc-router status: views', () => {
  it("sums a view's lag over its input partitions; unknown when the broker did not say for one", () => {
    expect(viewLag(report([{ lag: 3 }, { lag: 4 }], null))).toBe(7);
    expect(viewLag(report([{ lag: 3 }, { lag: null }], null))).toBeNull();
    expect(viewLag(report([], null))).toBe(0);
  });

  it('shows each view with its output, watermark and lag', () => {
    const text = formatViews({ sessions: report([{ lag: 2 }, { lag: 0 }], '2026-01-01T00:12:00.000Z'), totals: report([{ lag: null }], null) });
    const lines = text.trim().split('\n');
    expect(lines[0]).toMatch(/^VIEW\s+OUTPUT\s+WATERMARK\s+LAG\s+GROUPS\s+OUTBOX$/);
    expect(lines.find((l) => l.startsWith('sessions'))).toMatch(/^sessions\s+pg:public\.sessions\s+2026-01-01T00:12:00\.000Z\s+2\s+4\s+1$/);
    expect(lines.find((l) => l.startsWith('totals'))).toMatch(/^totals\s+pg:public\.sessions\s+-\s+-\s+4\s+1$/);
  });
});
