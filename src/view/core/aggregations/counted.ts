import { ViewInputError } from '../errors.ts';

/** A multiset as sorted [key, count] pairs: JSON-safe and deterministic (no object key order). */
export type Counted = [string, number][];

function search(list: Counted, key: string, order: (a: string, b: string) => number): [number, boolean] {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = order((list[mid] as [string, number])[0], key);
    if (c === 0) return [mid, true];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return [lo, false];
}

/**
 * A new multiset with every change applied in order (as countedApply one after the other), copying
 * the input once rather than once per change: a group's min or max takes a batch's changes at once.
 */
export function countedApplyAll(
  list: Counted,
  changes: readonly (readonly [key: string | null, delta: 1 | -1])[],
  order: (a: string, b: string) => number,
  what: string,
): Counted {
  const out = list.slice();
  for (const [key, delta] of changes) {
    if (key === null) continue;
    const [i, found] = search(out, key, order);
    if (found) {
      const count = (out[i] as [string, number])[1] + delta;
      if (count === 0) out.splice(i, 1);
      else out[i] = [key, count];
    } else {
      if (delta < 0) throw new ViewInputError('VIEW_NOT_ADDED', `${what}: subtract of a value that was never added`);
      out.splice(i, 0, [key, 1]);
    }
  }
  return out;
}

/** A new multiset with `key` added (delta 1) or removed once (delta -1); the input is not changed. */
export function countedApply(
  list: Counted,
  key: string,
  delta: 1 | -1,
  order: (a: string, b: string) => number,
  what: string,
): Counted {
  return countedApplyAll(list, [[key, delta]], order, what);
}

/** The union of two multisets (counts added), in the same order. */
export function countedMerge(a: Counted, b: Counted, order: (x: string, y: string) => number): Counted {
  const out: Counted = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    const c = x === undefined ? 1 : y === undefined ? -1 : order(x[0], y[0]);
    if (c < 0) {
      out.push([(x as [string, number])[0], (x as [string, number])[1]]);
      i++;
    } else if (c > 0) {
      out.push([(y as [string, number])[0], (y as [string, number])[1]]);
      j++;
    } else {
      out.push([(x as [string, number])[0], (x as [string, number])[1] + (y as [string, number])[1]]);
      i++;
      j++;
    }
  }
  return out;
}
