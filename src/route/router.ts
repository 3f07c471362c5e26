import type { ChangeEvent, TableId } from '../model/change-event.ts';
import type { RouteSpec } from '../config/load.ts';
import type { Sink } from '../sink/sink.ts';
import { compileChain } from '../transform/chain.ts';

/** What happens to the changes of one table: an ordered transform chain, then these sinks. */
export interface Route {
  readonly table: string;
  readonly apply: (event: ChangeEvent) => ChangeEvent | null;
  readonly sinks: readonly Sink[];
  /** Views reading this table: they get the decoded event, before the route's transforms. */
  readonly views: readonly Sink[];
}

export interface Router {
  /** The route for a table, or undefined when no route (not even "*") matches. */
  route(table: TableId): Route | undefined;
}

/**
 * Exact table ids win over "*". Chains are compiled once at startup; lookups are cached per id
 * because every event asks.
 */
export function createRouter(
  specs: readonly RouteSpec[],
  sinks: ReadonlyMap<string, Sink>,
  views: ReadonlyMap<string, readonly Sink[]> = new Map(),
): Router {
  const compiled = new Map<string, Route>();
  const identity = (e: ChangeEvent) => e;
  for (const spec of specs) {
    compiled.set(spec.table, {
      table: spec.table,
      views: views.get(spec.table) ?? [],
      apply: compileChain(spec.transforms),
      sinks: spec.sinks.map((name) => {
        const sink = sinks.get(name);
        if (!sink) throw new RangeError(`route ${spec.table} names unknown sink ${name}`);
        return sink;
      }),
    });
  }
  const wildcard = compiled.get('*');
  // A table views read but no route names gets the wildcard's route (or none: no sinks, no transforms) plus its views.
  for (const [table, readers] of views) {
    if (compiled.has(table)) continue;
    compiled.set(table, wildcard ? { ...wildcard, table, views: readers } : { table, apply: identity, sinks: [], views: readers });
  }
  const cache = new Map<string, Route | undefined>();
  return {
    route(table) {
      if (cache.has(table.id)) return cache.get(table.id);
      const r = compiled.get(table.id) ?? wildcard;
      cache.set(table.id, r);
      return r;
    },
  };
}
