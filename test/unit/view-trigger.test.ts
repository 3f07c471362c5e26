import { describe, expect, it } from 'vitest';
import { ViewSpecError } from '../../src/view/core/errors.ts';
import {
  type GlobalTrigger,
  type TriggerState,
  newTriggerState,
  triggerOnChange,
  triggerOnTime,
  validateTrigger,
} from '../../src/view/core/trigger.ts';

describe('global window triggers', () => {
  it('count: fires on every Nth change', () => {
    const t: GlobalTrigger = { kind: 'count', every: 3 };
    let s: TriggerState = newTriggerState();
    const fired: boolean[] = [];
    for (let i = 0; i < 7; i++) {
      const step = triggerOnChange(t, s);
      s = JSON.parse(JSON.stringify(step.state)) as TriggerState;
      fired.push(step.fire);
    }
    expect(fired).toEqual([false, false, true, false, false, true, false]);
    expect(triggerOnTime(t, s, 1e12).fire).toBe(false);
  });

  it('time: fires once per interval, and only with changes pending', () => {
    const t: GlobalTrigger = { kind: 'time', everyMs: 1000 };
    let s = newTriggerState();
    expect(triggerOnTime(t, s, 500).fire).toBe(false); // nothing changed
    s = triggerOnChange(t, s).state;
    expect(triggerOnChange(t, s).fire).toBe(false);
    let step = triggerOnTime(t, s, 1500);
    expect(step.fire).toBe(true);
    s = triggerOnChange(t, step.state).state;
    expect(triggerOnTime(t, s, 1999).fire).toBe(false); // same interval [1000, 2000)
    step = triggerOnTime(t, s, 2000);
    expect(step.fire).toBe(true);
    expect(step.state).toEqual({ pending: 0, lastFireBucket: 2 });
    expect(triggerOnTime(t, triggerOnChange(t, step.state).state, -1).fire).toBe(false); // a clock never goes back past a fired interval
  });

  it('are validated', () => {
    expect(() => validateTrigger({ kind: 'count', every: 0 })).toThrow(ViewSpecError);
    expect(() => validateTrigger({ kind: 'time', everyMs: 1.5 })).toThrow(/everyMs must be a whole number > 0, got 1.5/);
    expect(validateTrigger({ kind: 'time', everyMs: 10 })).toEqual({ kind: 'time', everyMs: 10 });
  });
});
