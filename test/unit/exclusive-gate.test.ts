import { describe, expect, it } from 'vitest';
import { ExclusiveGate } from '../../src/sink/exclusive-gate.ts';

const tick = () => new Promise((r) => setImmediate(r));

describe('ExclusiveGate', () => {
  it('runs shared sections together, an exclusive one after them and alone', async () => {
    const gate = new ExclusiveGate();
    const log: string[] = [];
    const gates: Record<string, () => void> = {};
    const section = (name: string) => async () => {
      log.push(`${name} start`);
      await new Promise<void>((r) => (gates[name] = r));
      log.push(`${name} end`);
    };
    const a = gate.runShared(section('a'));
    const b = gate.runShared(section('b'));
    await tick();
    const t = gate.runExclusive(section('t'));
    await tick();
    const c = gate.runShared(section('c'));
    await tick();
    expect(log).toEqual(['a start', 'b start']);
    gates['a']!();
    await tick();
    expect(log).toEqual(['a start', 'b start', 'a end']);
    gates['b']!();
    await tick();
    await tick();
    expect(log).toEqual(['a start', 'b start', 'a end', 'b end', 't start']);
    gates['t']!();
    await t;
    await tick();
    expect(log.slice(-2)).toEqual(['t end', 'c start']);
    gates['c']!();
    await Promise.all([a, b, c]);
  });

  it('releases the gate when a section fails', async () => {
    const gate = new ExclusiveGate();
    await expect(gate.runExclusive(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(gate.runShared(() => Promise.reject(new Error('bang')))).rejects.toThrow('bang');
    expect(await gate.runExclusive(() => Promise.resolve(1))).toBe(1);
    expect(await gate.runShared(() => Promise.resolve(2))).toBe(2);
  });
});
