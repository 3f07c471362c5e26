import type pg from 'pg';
import type { StoredGroup } from './state-store.ts';

/** Groups kept per process (all views of one store); the oldest used go first. */
const CACHE_GROUPS = 100_000;

/** A group as this process last committed it, and the id of the transaction that wrote it. */
export interface Cached {
  readonly rev: string;
  readonly group: StoredGroup | null;
}

/**
 * Group states this process committed, so that a batch locking a group whose stored revision is
 * still the one written here reads neither its state nor parses it again (a group's state is the
 * largest thing a batch reads: a min or max keeps every value). The revision is the id of the
 * writing transaction (txid_current), unique for the life of the database: another instance's
 * write, a reset or a restore all change it, so a stale entry is never used, only missed.
 * Entries are taken only once their transaction committed.
 */
export class GroupCache {
  private readonly entries = new Map<string, Cached>();
  private readonly pending = new WeakMap<pg.PoolClient, { view: string; gid: string; group: StoredGroup | null; rev: string }[]>();

  private static id(view: string, gid: string): string {
    return `${view}\u0000${gid}`;
  }

  get(view: string, gid: string): Cached | undefined {
    return this.entries.get(GroupCache.id(view, gid));
  }

  /** Saved in the client's open transaction; cached if it commits (committed). */
  saved(client: pg.PoolClient, view: string, rev: string, groups: readonly { gid: string; group: StoredGroup | null }[]): void {
    let list = this.pending.get(client);
    if (!list) this.pending.set(client, (list = []));
    for (const g of groups) list.push({ view, gid: g.gid, group: g.group, rev });
  }

  /** The client's transaction committed: what it saved is what the store holds now. */
  committed(client: pg.PoolClient): void {
    for (const p of this.pending.get(client) ?? []) {
      const id = GroupCache.id(p.view, p.gid);
      this.entries.delete(id);
      this.entries.set(id, { rev: p.rev, group: p.group });
    }
    this.pending.delete(client);
    for (const id of this.entries.keys()) {
      if (this.entries.size <= CACHE_GROUPS) break;
      this.entries.delete(id);
    }
  }

  /** A transaction begins or rolled back on the client: nothing it saved counts. */
  discard(client: pg.PoolClient): void {
    this.pending.delete(client);
  }

  /** A view's state is gone (reset): its entries would only be missed, but they take room. */
  forget(view: string): void {
    const prefix = `${view}\u0000`;
    for (const id of this.entries.keys()) if (id.startsWith(prefix)) this.entries.delete(id);
  }
}
