import type { Logger } from 'pino';
import pg from 'pg';
import type { Config } from '../config/load.ts';
import type { RouterEvents } from '../events.ts';
import { once, type Sink } from '../sink/sink.ts';
import { createViewSink } from './view-sink.ts';
import { StateStore } from './state-store.ts';
import { planView, type ViewPlan } from './view-plan.ts';

export interface Views {
  /** The view sinks reading each input table. */
  readonly byTable: ReadonlyMap<string, readonly Sink[]>;
  readonly sinks: readonly Sink[];
  readonly plans: readonly ViewPlan[];
  /** Ends the state connections (after the view sinks are closed). Idempotent. */
  close(): Promise<void>;
}

/**
 * The views of the config, each a sink of its input table writing its results to its output sink.
 * `wrap` gives a view the pipeline's write path around a sink (write combining, circuit breaker).
 */
export function buildViews(
  config: Config,
  deps: { sinks: ReadonlyMap<string, Sink>; events: RouterEvents; logger: Logger; wrap: (sink: Sink) => Sink },
): Views {
  const entries = Object.entries(config.views);
  if (entries.length === 0 || !config.state) return { byTable: new Map(), sinks: [], plans: [], close: () => Promise.resolve() };
  const pool = new pg.Pool({ connectionString: config.state.connection_string, max: config.state.pool_size, application_name: 'cdc-router views' });
  // An idle connection that fails (server restart) must not crash the process; the next query reconnects.
  pool.on('error', (err) => deps.logger.warn({ err, component: 'view' }, 'view state connection lost'));
  const store = new StateStore(config.state.schema);
  const byTable = new Map<string, Sink[]>();
  const sinks: Sink[] = [];
  const plans: ViewPlan[] = [];
  for (const [name, viewConfig] of entries) {
    const plan = planView(name, viewConfig);
    const output = deps.sinks.get(plan.output.sink);
    if (!output) throw new RangeError(`view ${name} names unknown sink ${plan.output.sink}`);
    const late = plan.late ? deps.sinks.get(plan.late.sink) : undefined;
    if (plan.late && !late) throw new RangeError(`view ${name} names unknown late sink ${plan.late.sink}`);
    const sink = deps.wrap(createViewSink({ plan, pool, store, output, late, events: deps.events, logger: deps.logger }));
    plans.push(plan);
    sinks.push(sink);
    byTable.set(plan.input, [...(byTable.get(plan.input) ?? []), sink]);
  }
  return { byTable, sinks, plans, close: once(() => pool.end()) };
}
