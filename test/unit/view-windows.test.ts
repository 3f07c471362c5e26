import { describe, expect, it } from 'vitest';
import { ViewSpecError } from '../../src/view/core/errors.ts';
import { ViewLateError, lateChangeError } from '../../src/view/core/late.ts';
import { mergeSession } from '../../src/view/core/sessions.ts';
import {
  type SlidingWindowChange,
  slidingFetchRange,
  slidingWindowsOf,
  slidingWindowsOnAdd,
  slidingWindowsOnRemove,
} from '../../src/view/core/sliding.ts';
import {
  GLOBAL_WINDOW,
  type TimeWindow,
  type WindowSpec,
  assignWindows,
  isLate,
  validateWindowSpec,
  windowClosed,
} from '../../src/view/core/windows.ts';
import { seededRandom as seeded } from '../support/random.ts';

const MIN15 = 15 * 60_000;

describe('tumbling windows', () => {
  const spec: WindowSpec = { kind: 'tumbling', sizeMs: 10 };
  it('are half-open and aligned to the epoch, boundaries and negative times included', () => {
    expect(assignWindows(spec, 0)).toEqual([{ start: 0, end: 10 }]);
    expect(assignWindows(spec, 9)).toEqual([{ start: 0, end: 10 }]);
    expect(assignWindows(spec, 10)).toEqual([{ start: 10, end: 20 }]);
    expect(assignWindows(spec, -1)).toEqual([{ start: -10, end: 0 }]);
    expect(assignWindows(spec, -10)).toEqual([{ start: -10, end: 0 }]);
    expect(assignWindows(spec, -11)).toEqual([{ start: -20, end: -10 }]);
  });

  it("equal PostgreSQL's date_bin(size, ts, 'epoch') (values printed by PostgreSQL)", () => {
    const tumbling15: WindowSpec = { kind: 'tumbling', sizeMs: MIN15 };
    // [event ms, date_bin('15 minutes', ts, 'epoch') in ms] as PostgreSQL computed them.
    const fixtures: [number, number][] = [
      [-1, -900000],
      [900000, 900000],
      [1796185799999, 1796184900000],
      [-2203613632992, -2203614000000],
    ];
    for (const [t, bin] of fixtures) expect(assignWindows(tumbling15, t)).toEqual([{ start: bin, end: bin + MIN15 }]);
  });

  it('shift by the offset', () => {
    const shifted: WindowSpec = { kind: 'tumbling', sizeMs: 10, offsetMs: 3 };
    expect(assignWindows(shifted, 3)).toEqual([{ start: 3, end: 13 }]);
    expect(assignWindows(shifted, 2)).toEqual([{ start: -7, end: 3 }]);
    expect(assignWindows({ kind: 'tumbling', sizeMs: 10, offsetMs: -3 }, 7)).toEqual([{ start: 7, end: 17 }]);
  });

  it('hold every time exactly once (random)', () => {
    const r = seeded(11);
    for (let i = 0; i < 2000; i++) {
      const size = r.int(1, 10_000);
      const t = r.int(-1e12, 1e12);
      const [w, ...rest] = assignWindows({ kind: 'tumbling', sizeMs: size }, t);
      expect(rest).toEqual([]);
      expect(w!.start <= t && t < w!.end && w!.end - w!.start === size && ((w!.start % size) + size) % size === 0).toBe(true);
    }
  });
});

describe('hopping windows', () => {
  const spec: WindowSpec = { kind: 'hopping', sizeMs: 30, advanceMs: 5 };
  it('give every window with start a multiple of advance and start <= t < start + size', () => {
    expect(assignWindows(spec, 0).map((w) => w.start)).toEqual([-25, -20, -15, -10, -5, 0]);
    expect(assignWindows(spec, 7).map((w) => w.start)).toEqual([-20, -15, -10, -5, 0, 5]);
    expect(assignWindows(spec, 30).map((w) => w.start)).toEqual([5, 10, 15, 20, 25, 30]);
    expect(assignWindows(spec, 29)).toContainEqual({ start: 0, end: 30 });
    expect(assignWindows(spec, 30)).not.toContainEqual({ start: 0, end: 30 });
    expect(assignWindows(spec, -1).map((w) => w.start)).toEqual([-30, -25, -20, -15, -10, -5]);
    expect(assignWindows({ kind: 'hopping', sizeMs: 10, advanceMs: 4 }, 9).map((w) => w.start)).toEqual([0, 4, 8]);
    expect(assignWindows({ kind: 'hopping', sizeMs: 10, advanceMs: 10 }, 9)).toEqual(assignWindows({ kind: 'tumbling', sizeMs: 10 }, 9));
  });

  it("match Kafka Streams' TimeWindows.windowsFor where it does not clamp at 0 (random)", () => {
    const r = seeded(5);
    for (let i = 0; i < 2000; i++) {
      const size = r.int(1, 500);
      const advance = r.int(1, size);
      const t = r.int(size, 1e9);
      let windowStart = Math.max(0, t - size + advance);
      windowStart -= windowStart % advance;
      const kafka: TimeWindow[] = [];
      for (; windowStart <= t; windowStart += advance) kafka.push({ start: windowStart, end: windowStart + size });
      expect(assignWindows({ kind: 'hopping', sizeMs: size, advanceMs: advance }, t)).toEqual(kafka);
    }
  });
});

describe('window specs', () => {
  it('are validated with errors that name the field', () => {
    const bad: [WindowSpec, RegExp][] = [
      [{ kind: 'tumbling', sizeMs: 0 }, /tumbling window sizeMs must be .* > 0, got 0/],
      [{ kind: 'tumbling', sizeMs: 1.5 }, /sizeMs/],
      [{ kind: 'tumbling', sizeMs: 10, offsetMs: 10 }, /offsetMs .* \|offset\| < 10/],
      [{ kind: 'hopping', sizeMs: 10, advanceMs: 11 }, /advanceMs \(11\) must not exceed sizeMs \(10\)/],
      [{ kind: 'hopping', sizeMs: 10, advanceMs: 0 }, /advanceMs/],
      [{ kind: 'hopping', sizeMs: 100_000, advanceMs: 1 }, /100000 windows/],
      [{ kind: 'session', gapMs: -1 }, /gapMs/],
      [{ kind: 'sliding', differenceMs: -5 }, /differenceMs/],
    ];
    for (const [spec, message] of bad) {
      expect(() => validateWindowSpec(spec)).toThrow(ViewSpecError);
      expect(() => validateWindowSpec(spec)).toThrow(message);
    }
    expect(validateWindowSpec({ kind: 'hopping', sizeMs: 10, advanceMs: 3 })).toEqual({ kind: 'hopping', sizeMs: 10, advanceMs: 3 });
    expect(() => assignWindows({ kind: 'session', gapMs: 5 }, 1)).toThrow(/mergeSession/);
    expect(() => assignWindows({ kind: 'tumbling', sizeMs: 5 }, 1.5)).toThrow(RangeError);
    expect(assignWindows({ kind: 'global' }, 123)).toEqual([GLOBAL_WINDOW]);
  });
});

describe('closing and lateness', () => {
  it('closes half-open windows at watermark >= end + grace, closed ones at end + 1 + grace', () => {
    const w = { start: 0, end: 10 };
    expect(windowClosed(w, 9, 0, 'tumbling')).toBe(false);
    expect(windowClosed(w, 10, 0, 'tumbling')).toBe(true);
    expect(windowClosed(w, 14, 5, 'hopping')).toBe(false);
    expect(windowClosed(w, 15, 5, 'hopping')).toBe(true);
    expect(windowClosed(w, 10, 0, 'session')).toBe(false);
    expect(windowClosed(w, 11, 0, 'session')).toBe(true);
    expect(windowClosed(w, 15, 5, 'sliding')).toBe(false);
    expect(windowClosed(w, 16, 5, 'sliding')).toBe(true);
    expect(windowClosed(w, null, 0, 'tumbling')).toBe(false);
    expect(windowClosed(GLOBAL_WINDOW, Number.MAX_SAFE_INTEGER, 0, 'global')).toBe(false);
  });

  it('calls an event late only when every window it would change is closed', () => {
    const tumbling: WindowSpec = { kind: 'tumbling', sizeMs: 10 };
    expect(isLate(5, 10, 0, tumbling)).toBe(true);
    expect(isLate(5, 9, 0, tumbling)).toBe(false);
    expect(isLate(5, 12, 3, tumbling)).toBe(false);
    expect(isLate(5, 13, 3, tumbling)).toBe(true);
    expect(isLate(10, 10, 0, tumbling)).toBe(false);
    const hopping: WindowSpec = { kind: 'hopping', sizeMs: 30, advanceMs: 5 };
    // t = 7 is in windows up to [5, 35): late only once that one closes, though [-20, 10) closed long ago.
    expect(isLate(7, 34, 0, hopping)).toBe(false);
    expect(isLate(7, 35, 0, hopping)).toBe(true);
    const sliding: WindowSpec = { kind: 'sliding', differenceMs: 10 };
    expect(isLate(100, 111, 0, sliding)).toBe(false);
    expect(isLate(100, 112, 0, sliding)).toBe(true);
    const session: WindowSpec = { kind: 'session', gapMs: 5 };
    expect(isLate(100, 101, 0, session)).toBe(true);
    expect(isLate(100, 101, 0, session, { start: 90, end: 103 })).toBe(false);
    expect(isLate(-5, Number.MAX_SAFE_INTEGER, 0, { kind: 'global' })).toBe(false);
  });
});

describe('session windows', () => {
  it('start a new session, extend one within the gap (inclusive), or leave it as it is', () => {
    expect(mergeSession([], 100, 10)).toEqual({ session: { start: 100, end: 100 }, absorbed: [], mergedAway: [] });
    const s = { start: 100, end: 120 };
    expect(mergeSession([s], 130, 10)).toEqual({ session: { start: 100, end: 130 }, absorbed: [s], mergedAway: [s] });
    expect(mergeSession([s], 131, 10).session).toEqual({ start: 131, end: 131 });
    expect(mergeSession([s], 90, 10).session).toEqual({ start: 90, end: 120 });
    expect(mergeSession([s], 89, 10).mergedAway).toEqual([]);
    expect(mergeSession([s], 110, 10)).toEqual({ session: s, absorbed: [s], mergedAway: [] });
    expect(mergeSession([s], 120, 0)).toEqual({ session: s, absorbed: [s], mergedAway: [] });
    expect(mergeSession([s], 121, 0).session).toEqual({ start: 121, end: 121 });
  });

  it('merge every session an event bridges: two, and three', () => {
    const a = { start: 0, end: 10 };
    const b = { start: 25, end: 30 };
    const c = { start: 45, end: 50 };
    expect(mergeSession([b, a], 18, 8)).toEqual({ session: { start: 0, end: 30 }, absorbed: [a, b], mergedAway: [a, b] });
    // Gap 18: 27 is within reach of a (10 + 18), b, and c (45 - 18): all three become one.
    expect(mergeSession([c, a, b], 27, 18)).toEqual({ session: { start: 0, end: 50 }, absorbed: [a, b, c], mergedAway: [a, b, c] });
    expect(mergeSession([a, b, c], 60, 10)).toEqual({ session: { start: 45, end: 60 }, absorbed: [c], mergedAway: [c] });
  });

  it('end up as the gap-split of the sorted events whatever the arrival order (random)', () => {
    const r = seeded(99);
    for (let round = 0; round < 300; round++) {
      const gap = r.int(0, 20);
      const times = Array.from({ length: r.int(1, 40) }, () => r.int(-200, 200));
      let sessions: TimeWindow[] = [];
      for (const t of times) {
        const m = mergeSession(sessions, t, gap);
        sessions = [...sessions.filter((s) => !m.absorbed.includes(s)), m.session];
        for (const away of m.mergedAway) expect(m.absorbed).toContain(away);
      }
      const sorted = [...times].sort((x, y) => x - y);
      const expected: TimeWindow[] = [];
      for (const t of sorted) {
        const last = expected.at(-1);
        if (last && t - last.end <= gap) expected[expected.length - 1] = { start: last.start, end: t };
        else expected.push({ start: t, end: t });
      }
      expect(sessions.sort((x, y) => x.start - y.start)).toEqual(expected);
    }
  });
});

/** Brute force from the definition: left window of every event, right window when non-empty. */
function bruteWindows(times: number[], d: number): Map<number, number[]> {
  const inside = (s: number) => times.filter((x) => x >= s && x <= s + d).sort((x, y) => x - y);
  const out = new Map<number, number[]>();
  for (const r of times) {
    out.set(r - d, inside(r - d));
    if (inside(r + 1).length > 0) out.set(r + 1, inside(r + 1));
  }
  return out;
}

function byStart(changes: SlidingWindowChange[]): SlidingWindowChange[] {
  return [...changes].sort((x, y) => x.window.start - y.window.start);
}

describe('sliding windows', () => {
  it("follow Kafka Streams' left and right windows (example)", () => {
    expect(slidingWindowsOnAdd([], 5, 10)).toEqual([{ window: { start: -5, end: 5 }, members: [5], created: true }]);
    expect(slidingWindowsOnAdd([5], 12, 10)).toEqual([
      { window: { start: 2, end: 12 }, members: [5, 12], created: true },
      { window: { start: 6, end: 16 }, members: [12], created: true },
    ]);
    // Out of order: 8 lands in [2,12], [6,16], gets its own left window, and a right window with 12 in it.
    expect(slidingWindowsOnAdd([5, 12], 8, 10)).toEqual([
      { window: { start: -2, end: 8 }, members: [5, 8], created: true },
      { window: { start: 2, end: 12 }, members: [5, 8, 12], created: false },
      { window: { start: 6, end: 16 }, members: [8, 12], created: false },
      { window: { start: 9, end: 19 }, members: [12], created: true },
    ]);
    expect(slidingWindowsOf([5, 8, 12], 10).map((w) => w.start)).toEqual([-5, -2, 2, 6, 9]);
    // Exactly d + 1 apart: the right window of 5 is the left window of 16 (one window).
    expect(slidingWindowsOnAdd([5], 16, 10)).toEqual([{ window: { start: 6, end: 16 }, members: [16], created: true }]);
    // Duplicate time: updates the existing left window, creates nothing.
    expect(slidingWindowsOnAdd([5], 5, 10)).toEqual([{ window: { start: -5, end: 5 }, members: [5, 5], created: false }]);
  });

  it('equal a brute-force enumeration on random adds and removes', () => {
    const r = seeded(2024);
    for (let round = 0; round < 400; round++) {
      const d = r.int(0, 15);
      let times: number[] = [];
      for (let step = 0; step < 25; step++) {
        const before = bruteWindows(times, d);
        if (times.length > 0 && r.next() < 0.35) {
          const t = r.pick(times);
          const after = times.slice();
          after.splice(after.indexOf(t), 1);
          const now = bruteWindows(after, d);
          const got = slidingWindowsOnRemove(times, t, d);
          const removed = [...before.keys()].filter((s) => !now.has(s)).sort((x, y) => x - y);
          expect(got.removed.map((w) => w.start)).toEqual(removed);
          const changed = [...now.entries()]
            .filter(([s]) => before.has(s) && s <= t && t <= s + d)
            .map(([s, members]) => ({ window: { start: s, end: s + d }, members, created: false }));
          expect(byStart(got.changed)).toEqual(byStart(changed));
          times = after;
        } else {
          const t = r.int(-30, 30);
          const after = [...times, t].sort((x, y) => x - y);
          const now = bruteWindows(after, d);
          const expected = [...now.entries()]
            .filter(([s]) => !before.has(s) || (s <= t && t <= s + d))
            .map(([s, members]) => ({ window: { start: s, end: s + d }, members, created: !before.has(s) }));
          expect(byStart(slidingWindowsOnAdd(times, t, d))).toEqual(byStart(expected));
          times = after;
        }
        expect(slidingWindowsOf(times, d).map((w) => w.start)).toEqual([...bruteWindows(times, d).keys()].sort((x, y) => x - y));
      }
    }
  });

  it('cover every distinct set of events a d-long window can hold, once', () => {
    const r = seeded(8);
    for (let round = 0; round < 200; round++) {
      const d = r.int(0, 10);
      const times = Array.from({ length: r.int(1, 12) }, () => r.int(0, 40)).sort((x, y) => x - y);
      const contents = (s: number) => times.filter((x) => x >= s && x <= s + d).join(',');
      const defined = slidingWindowsOf(times, d).map((w) => contents(w.start));
      expect(new Set(defined).size).toBe(defined.length);
      for (let s = -d - 2; s <= 42; s++) {
        const c = contents(s);
        if (c !== '') expect(defined).toContain(c);
      }
    }
  });

  it('need only the times in the fetch range', () => {
    const r = seeded(77);
    for (let round = 0; round < 500; round++) {
      const d = r.int(0, 10);
      const times = Array.from({ length: r.int(0, 30) }, () => r.int(-40, 40)).sort((x, y) => x - y);
      const t = r.int(-30, 30);
      const range = slidingFetchRange(t, d);
      const near = times.filter((x) => x >= range.start && x <= range.end);
      expect(slidingWindowsOnAdd(near, t, d)).toEqual(slidingWindowsOnAdd(times, t, d));
      if (times.length > 0) {
        const gone = r.pick(times);
        const around = slidingFetchRange(gone, d);
        const close = times.filter((x) => x >= around.start && x <= around.end);
        expect(slidingWindowsOnRemove(close, gone, d)).toEqual(slidingWindowsOnRemove(times, gone, d));
      }
    }
  });

  it('refuse to remove an event that is not there', () => {
    expect(() => slidingWindowsOnRemove([1, 2], 3, 5)).toThrow(RangeError);
  });
});

describe('late change errors', () => {
  it('name the change time, the window, the watermark and the grace', () => {
    const spec: WindowSpec = { kind: 'tumbling', sizeMs: 15 * 60_000 };
    const t = Date.parse('2026-12-02T04:29:59.999Z');
    const err = lateChangeError(t, spec, Date.parse('2026-12-02T04:31:00.000Z'), 60_000);
    expect(err).toBeInstanceOf(ViewLateError);
    expect(err.code).toBe('VIEW_LATE');
    expect(err.window).toEqual({ start: 1796184900000, end: 1796185800000 });
    expect(err.watermarkMs).toBe(1796185860000);
    expect(err.eventMs).toBe(t);
    expect(err.stage).toBe('view');
    expect(err.retriable).toBe(false);
    expect(err.message).toBe(
      'change at 2026-12-02T04:29:59.999Z (1796185799999) is too late for tumbling window ' +
        '[2026-12-02T04:15:00.000Z (1796184900000), 2026-12-02T04:30:00.000Z (1796185800000)): ' +
        'the watermark 2026-12-02T04:31:00.000Z (1796185860000) reached its close at ' +
        '2026-12-02T04:31:00.000Z (1796185860000) (grace 60000 ms)',
    );
    const session = lateChangeError(100, { kind: 'session', gapMs: 5 }, 200, 0, { start: 90, end: 100 });
    expect(session.message).toContain('session window [1970-01-01T00:00:00.090Z (90), 1970-01-01T00:00:00.100Z (100)]');
    expect(session.message).toContain('close at 1970-01-01T00:00:00.101Z (101)');
    expect(lateChangeError(Number.MAX_SAFE_INTEGER, { kind: 'sliding', differenceMs: 1 }, 0, 0).message).toContain(
      `${Number.MAX_SAFE_INTEGER} ms`,
    );
  });
});
