/**
 * The views benchmark's runs: cdc-router (startService, as `cdc-router run` starts it) on the views
 * corpus, in one of these variants:
 * - `noop`: the table routed to a no-op sink (the basis of the ratios);
 * - `filter-map`: the same route through a stateless transform chain (filter, rename_fields, drop_fields);
 * - `tumbling-5s`, `hopping-30s-5s`: count, sum and max per 1k-valued group per window of the commit time;
 * - `session-5m`: the same per session (5 min gap) of the commit time, the table read as a stream;
 * - `group-1k`, `group-100k`, `group-1M`: count, sum and max per group, no window;
 * - `group-1k-pg`: as `group-1k`, with the results written by the PostgreSQL sink instead of a no-op one.
 * Every view keeps its state in its own schema on PostgreSQL; its results leave through the outbox
 * to the output sink (a no-op sink unless the variant says otherwise), except that the PostgreSQL
 * sink of `group-1k-pg`, on the state's database, writes them inside the state transaction.
 */
import { fileURLToPath } from 'node:url';
import { SOURCE_SCHEMA } from './corpus.ts';
import { merged, prepareRouterWith } from './mode-router.ts';
import type { ModeRunner, ViewsTask, ViewsVariant } from './protocol.ts';
import { GROUP_COLUMNS, VIEWS_TABLE } from './views-corpus.ts';

const TABLE = `${SOURCE_SCHEMA}.${VIEWS_TABLE}`;
/** The view's name in every variant; its results go to the table `<state schema>.results`. */
export const VIEW_NAME = 'bench_view';

const AGGREGATIONS = {
  orders: { fn: 'count' },
  revenue: { fn: 'sum', column: 'total' },
  biggest: { fn: 'max', column: 'total' },
} as const;

function viewFor(variant: ViewsVariant, stateSchema: string): Record<string, unknown> | undefined {
  const to = { sink: variant === 'group-1k-pg' ? 'pg' : 'out', table: `${stateSchema}.results` };
  const base = { from: { table: TABLE }, aggregations: AGGREGATIONS, to };
  switch (variant) {
    case 'noop':
    case 'filter-map':
      return undefined;
    case 'tumbling-5s':
      return { ...base, group_by: [GROUP_COLUMNS['1k']], window: { tumbling: '5s' }, event_time: 'commit_time' };
    case 'hopping-30s-5s':
      return { ...base, group_by: [GROUP_COLUMNS['1k']], window: { hopping: { size: '30s', advance: '5s' } }, event_time: 'commit_time' };
    case 'session-5m':
      // Session windows read streams: the table's changelog read as occurrences (each change counted once).
      return { ...base, from: { stream: TABLE }, group_by: [GROUP_COLUMNS['1k']], window: { session: { gap: '5m' } } };
    case 'group-1k':
    case 'group-1k-pg':
      return { ...base, group_by: [GROUP_COLUMNS['1k']] };
    case 'group-100k':
      return { ...base, group_by: [GROUP_COLUMNS['100k']] };
    case 'group-1M':
      return { ...base, group_by: [GROUP_COLUMNS['1M']] };
  }
}

function routesFor(variant: ViewsVariant): unknown[] {
  if (variant === 'noop') return [{ table: TABLE, sinks: ['out'] }];
  if (variant === 'filter-map') {
    return [
      {
        table: TABLE,
        transforms: [
          { kind: 'filter', where: { field: 'status', not_equals: 'cancelled' } },
          { kind: 'rename_fields', fields: { total: 'amount', item_count: 'items' } },
          { kind: 'drop_fields', fields: ['note'] },
        ],
        sinks: ['out'],
      },
    ];
  }
  return [];
}

export function viewsConfig(task: ViewsTask): Record<string, unknown> {
  const view = viewFor(task.variant, task.stateSchema);
  return merged(process.env['BENCH_ROUTER_CONFIG'], {
    kafka: { brokers: [task.servers.broker], client_id: 'cdc-bench', group_id: task.group, topics: [task.topic] },
    sinks: {
      out: { kind: 'noop' },
      ...(task.variant === 'group-1k-pg' ? { pg: { kind: 'postgres', connection: { connection_string: task.servers.pgUrl }, schema: task.stateSchema } } : {}),
    },
    routes: routesFor(task.variant),
    ...(view ? { state: { connection_string: task.servers.pgUrl, schema: task.stateSchema }, views: { [VIEW_NAME]: view } } : {}),
    handlers: fileURLToPath(new URL('./noop-handlers.ts', import.meta.url)),
    metrics: { port: 0 },
    log: { level: process.env['BENCH_LOG_LEVEL'] ?? 'warn' },
  });
}

export function prepareViews(task: ViewsTask): Promise<ModeRunner> {
  return prepareRouterWith(viewsConfig(task), task.latency);
}
