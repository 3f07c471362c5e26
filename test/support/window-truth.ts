/**
 * Session and sliding windows computed from their definitions over a whole set of changes, for
 * comparing with what a view keeps incrementally. Results are keyed and shaped as the view's
 * (group `user`, window bounds, count `n` and sum `total`), every value as text.
 */

export interface Visit {
  readonly id: number;
  readonly user: string;
  /** Event time, epoch ms. */
  readonly at: number;
  readonly amount: number;
}

type Results = Record<string, Record<string, string>>;

function byUser(visits: readonly Visit[]): Map<string, Visit[]> {
  const out = new Map<string, Visit[]>();
  for (const v of visits) out.set(v.user, [...(out.get(v.user) ?? []), v]);
  for (const list of out.values()) list.sort((a, b) => a.at - b.at);
  return out;
}

function result(user: string, start: number, end: number, members: readonly Visit[]): [string, Record<string, string>] {
  const total = members.reduce((s, v) => s + v.amount, 0);
  return [
    JSON.stringify({ user, window_start: start, window_end: end }),
    { user, window_start: String(start), window_end: String(end), n: String(members.length), total: String(total) },
  ];
}

/** Sessions: a user's changes in time order, split wherever two neighbours are more than `gapMs` apart; [first, last]. */
export function sessionTruth(visits: readonly Visit[], gapMs: number): Results {
  const out: Results = {};
  for (const [user, list] of byUser(visits)) {
    let session: Visit[] = [];
    const close = () => {
      if (session.length === 0) return;
      const [k, r] = result(user, session[0]!.at, session.at(-1)!.at, session);
      out[k] = r;
    };
    for (const v of list) {
      if (session.length > 0 && v.at - session.at(-1)!.at > gapMs) {
        close();
        session = [];
      }
      session.push(v);
    }
    close();
  }
  return out;
}

/**
 * Sliding windows as Kafka Streams defines them, both ends inclusive: for each change at r, the
 * window [r − d, r], and [r + 1, r + 1 + d] when some change falls in it.
 */
export function slidingTruth(visits: readonly Visit[], differenceMs: number): Results {
  const out: Results = {};
  for (const [user, list] of byUser(visits)) {
    const starts = new Set<number>();
    for (const r of list) {
      starts.add(r.at - differenceMs);
      if (list.some((v) => v.at >= r.at + 1 && v.at <= r.at + 1 + differenceMs)) starts.add(r.at + 1);
    }
    for (const start of starts) {
      const [k, r] = result(user, start, start + differenceMs, list.filter((v) => v.at >= start && v.at <= start + differenceMs));
      out[k] = r;
    }
  }
  return out;
}
