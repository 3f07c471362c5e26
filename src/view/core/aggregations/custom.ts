import type { AggValue, Aggregator, CustomAggregation, JsonValue } from '../aggregation.ts';
import { ViewInputError, ViewSpecError, describeType } from '../errors.ts';

/** Where a state is not JSON, as a path ('$.items[2]'), or undefined when it is. */
function notJsonAt(value: unknown, path: string): string | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = notJsonAt(value[i], `${path}[${i}]`);
      if (bad) return bad;
    }
    return undefined;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) return path;
    for (const [k, v] of Object.entries(value)) {
      const bad = notJsonAt(v, `${path}.${k}`);
      if (bad) return bad;
    }
    return undefined;
  }
  return path;
}

/** Throws unless `state` survives JSON.stringify/parse unchanged (no bigint, Map, Set, Date, NaN, undefined). */
function checkJson<S>(name: string, step: string, state: S): S {
  const bad = notJsonAt(state, '$');
  if (bad !== undefined) {
    throw new ViewInputError(
      'VIEW_STATE_NOT_JSON',
      `custom aggregation ${name}: ${step}() returned a state that is not JSON at ${bad} ` +
        '(the state is stored as jsonb: use strings for big numbers, arrays or objects for collections)',
    );
  }
  return state;
}

function defaultResult(name: string, state: unknown): AggValue {
  if (state === null || ['number', 'string', 'boolean'].includes(typeof state)) return state as AggValue;
  throw new ViewSpecError(`custom aggregation ${name}: its state is ${describeType(state)}, so it needs a result() function`);
}

/** A user's retractable aggregation, checked so that its state can be stored. */
export function aggregate<S extends JsonValue, T extends AggValue = AggValue>(fns: CustomAggregation<S, T>): Aggregator<S, T> {
  const name = fns.name ?? 'custom';
  const aggregator: Aggregator<S, T> = {
    kind: 'custom',
    init: () => checkJson(name, 'init', fns.init()),
    add: (state, value) => checkJson(name, 'add', fns.add(state, value)),
    subtract: (state, value) => checkJson(name, 'subtract', fns.subtract(state, value)),
    // Without result() the state is the result: T is then AggValue.
    result: (state) => (fns.result ? fns.result(state) : (defaultResult(name, state) as T)),
  };
  const merge = fns.merge;
  if (merge) aggregator.merge = (a, b) => checkJson(name, 'merge', merge(a, b));
  return aggregator;
}
