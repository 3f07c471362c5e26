import { describe, expect, it } from 'vitest';
import { SinkError } from '../../src/errors.ts';
import { AbortedError, backoffDelay, retry } from '../../src/retry/retrier.ts';

const fast = { initialMs: 1, maxMs: 5, factor: 2, jitter: 0.5 };

describe('retry', () => {
  it('retries retriable errors until success', async () => {
    let calls = 0;
    const result = await retry(fast, async () => {
      calls++;
      if (calls < 4) throw new SinkError('s', 'down', { code: 'X', retriable: true });
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(calls).toBe(4);
  });

  it('never retries permanent or programmer errors', async () => {
    let calls = 0;
    await expect(
      retry(fast, async () => {
        calls++;
        throw new TypeError('bug');
      }),
    ).rejects.toThrow(TypeError);
    expect(calls).toBe(1);
    await expect(retry(fast, async () => Promise.reject(new SinkError('s', 'bad', { code: 'X', retriable: false })))).rejects.toThrow('bad');
  });

  it('stops when aborted', async () => {
    const ac = new AbortController();
    const p = retry({ ...fast, initialMs: 50, maxMs: 50 }, async () => Promise.reject(new SinkError('s', 'down', { code: 'X', retriable: true })), { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await expect(p).rejects.toBeInstanceOf(AbortedError);
  });

  it('gives up after the deadline', async () => {
    await expect(
      retry({ ...fast, deadlineMs: 30 }, async () => Promise.reject(new SinkError('s', 'down', { code: 'X', retriable: true }))),
    ).rejects.toThrow('down');
  });

  it('backs off exponentially within the jitter band and the cap', () => {
    const p = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.2 };
    expect(backoffDelay(p, 0, () => 0.5)).toBe(100);
    expect(backoffDelay(p, 2, () => 0)).toBe(320);
    expect(backoffDelay(p, 2, () => 1)).toBe(480);
    expect(backoffDelay(p, 10, () => 0.5)).toBe(1000);
  });
});
