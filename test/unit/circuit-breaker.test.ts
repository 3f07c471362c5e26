import { describe, expect, it } from 'vitest';
import { SinkError } from '../../src/errors.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { withCircuitBreaker } from '../../src/sink/circuit-breaker.ts';
import { OK, type Sink } from '../../src/sink/sink.ts';

/** A stand-in sink for this pure state-machine test: fails while `down` is true. */
function flakySink() {
  const state = { down: true, calls: 0 };
  const sink: Sink = {
    name: 's',
    kind: 'test',
    start: async () => undefined,
    close: async () => undefined,
    async write(batch) {
      state.calls++;
      if (state.down) throw new SinkError('s', 'connection refused', { code: 'ECONNREFUSED', retriable: true });
      return batch.map(() => OK);
    },
  };
  return { sink, state };
}

describe('circuit breaker', () => {
  it('opens after the threshold, fails fast while open, closes after a good trial', async () => {
    const { sink, state } = flakySink();
    const events = new RouterEvents();
    const seen: string[] = [];
    events.on('sink.circuit', (e) => seen.push(e.state));
    const cb = withCircuitBreaker(sink, { failureThreshold: 3, openMs: 40 }, events, createLogger({ level: 'silent' }));
    for (let i = 0; i < 3; i++) await expect(cb.write([])).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(seen).toEqual(['open']);
    await expect(cb.write([])).rejects.toMatchObject({ code: 'CIRCUIT_OPEN', retriable: true });
    expect(state.calls).toBe(3);
    await new Promise((r) => setTimeout(r, 50));
    await expect(cb.write([])).rejects.toMatchObject({ code: 'ECONNREFUSED' }); // failed trial
    expect(seen).toEqual(['open', 'half-open', 'open']);
    state.down = false;
    await expect(cb.write([])).rejects.toMatchObject({ code: 'CIRCUIT_OPEN' });
    await new Promise((r) => setTimeout(r, 50));
    await expect(cb.write([])).resolves.toEqual([]);
    expect(seen).toEqual(['open', 'half-open', 'open', 'half-open', 'closed']);
  });

  it('does not count permanent errors', async () => {
    const sink: Sink = {
      name: 's',
      kind: 'test',
      start: async () => undefined,
      close: async () => undefined,
      write: async () => Promise.reject(new SinkError('s', 'bad mapping', { code: 'MAPPING', retriable: false })),
    };
    const cb = withCircuitBreaker(sink, { failureThreshold: 1, openMs: 1000 }, new RouterEvents(), createLogger({ level: 'silent' }));
    await expect(cb.write([])).rejects.toMatchObject({ code: 'MAPPING' });
    await expect(cb.write([])).rejects.toMatchObject({ code: 'MAPPING' });
  });
});
