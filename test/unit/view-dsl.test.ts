import { resolve } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { ConfigError, type ConfigIssue } from '../../src/errors.ts';
import {
  aggregate,
  avg,
  count,
  countDistinct,
  custom,
  defineHandlers,
  fromStream,
  fromTable,
  max,
  min,
  stddev_pop,
  stddev_samp,
  sum,
  var_pop,
  var_samp,
  type Decimal,
  type Int64,
  type TimestampString,
  type TypedView,
} from '../../src/index.ts';
import { UNAVAILABLE, type ChangeEvent, type Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { ViewInputError } from '../../src/view/core/errors.ts';
import { viewSchema } from '../../src/view/view-config.ts';
import { planView, type Contribution, type ViewPlan } from '../../src/view/view-plan.ts';

interface Order {
  id: Int64;
  customer_id: string;
  status: string;
  total: Decimal;
  qty: number;
  weight: number | null;
  ordered_at: TimestampString;
}

interface Click {
  page: string;
  user: string;
}

type RowOf<V> = V extends TypedView<infer R> ? R : never;

function event(row: Row, tsMs: number): ChangeEvent {
  return {
    kind: 'change',
    op: 'c',
    table: { id: 'public.orders', db: undefined, schema: 'public', table: 'orders' },
    key: { id: row.id ?? null },
    before: null,
    after: row,
    source: { connector: 'postgresql', name: 't', db: 'shop', schema: 'public', table: 'orders', tsMs, snapshot: undefined, raw: {} },
    position: position('postgres', [1n]),
    tsMs,
    kafka: { topic: 'orders', partition: 0, offset: '0', timestamp: 0 },
    columns: undefined,
  };
}

const ORDERS: Row[] = [
  { id: 1, customer_id: 'a', status: 'paid', total: '10.50', qty: 2, weight: 1.5, ordered_at: '2024-05-01T10:15:00Z' },
  { id: 2, customer_id: 'a', status: 'cancelled', total: '99.00', qty: 1, weight: null, ordered_at: '2024-05-01T10:45:00Z' },
  { id: 3, customer_id: 'b', status: 'paid', total: '7.25', qty: 5, weight: 0.25, ordered_at: '2024-05-01T11:05:00Z' },
  { id: 4, customer_id: 'b', status: 'new', total: '1.00', qty: 1, weight: 2, ordered_at: '2024-05-01T12:59:59.999Z' },
  { id: 5, customer_id: 'c', status: 'paid', total: '3.10', qty: 3, weight: 4.5, ordered_at: '2024-05-02T00:00:00Z' },
];

/** Each sample row's contributions through the plan: its image, then grouping (and windows). */
function contributionsOf(plan: ViewPlan, rows: readonly Row[]): Contribution[][] {
  return rows.map((row, i) => plan.contributions(plan.image(event(row, 1_714_557_600_000 + i * 1_800_000), row, null)));
}

/** Each group's results, folding every contribution with the plan's aggregators. */
function resultsOf(plan: ViewPlan, contributions: readonly Contribution[][]): Record<string, unknown[]> {
  const states = new Map<string, unknown[]>();
  for (const c of contributions.flat()) {
    const state = states.get(c.groupId) ?? plan.aggregations.map((a) => a.aggregator.init());
    states.set(
      c.groupId,
      plan.aggregations.map((a, i) => a.aggregator.add(state[i] as never, c.values[i])),
    );
  }
  return Object.fromEntries([...states].map(([g, s]) => [g, plan.aggregations.map((a, i) => a.aggregator.result(s[i] as never))]));
}

function yamlPlan(name: string, config: Record<string, unknown>): ViewPlan {
  return planView(name, viewSchema.parse({ ...config, to: { sink: 'out', table: 'public.results' } }));
}

describe('the view DSL: types flow from the row to the result', () => {
  it('group columns and aggregation results make the result row', () => {
    const view = fromTable<Order>('public.orders')
      .filter((o) => o.status !== 'cancelled')
      .groupBy('customer_id')
      .aggregate({
        orders: count(),
        weighed: count('weight'),
        revenue: sum('total'),
        items: sum('qty'),
        biggest: max('total'),
        lightest: min('weight'),
        average: avg('total'),
        vp: var_pop('qty'),
        vs: var_samp('qty'),
        sp: stddev_pop('qty'),
        ss: stddev_samp('qty'),
        statuses: countDistinct('status'),
      })
      .to('replica', { table: 'public.revenue_per_customer' });
    expectTypeOf<RowOf<typeof view>>().toEqualTypeOf<{
      readonly customer_id: string;
      readonly orders: number;
      readonly weighed: number;
      readonly revenue: string | null;
      readonly items: number | bigint | null;
      readonly biggest: string | null;
      readonly lightest: number | null;
      readonly average: string | null;
      readonly vp: string | number | null;
      readonly vs: string | number | null;
      readonly sp: string | number | null;
      readonly ss: string | number | null;
      readonly statuses: number;
    }>();
    expect(view.problems).toEqual([]);
    expect(view.definition.aggregations.map((a) => [a.name, a.fn, a.column])).toEqual([
      ['orders', 'count', undefined],
      ['weighed', 'count', 'weight'],
      ['revenue', 'sum', 'total'],
      ['items', 'sum', 'qty'],
      ['biggest', 'max', 'total'],
      ['lightest', 'min', 'weight'],
      ['average', 'avg', 'total'],
      ['vp', 'var_pop', 'qty'],
      ['vs', 'var_samp', 'qty'],
      ['sp', 'stddev_pop', 'qty'],
      ['ss', 'stddev_samp', 'qty'],
      ['statuses', 'count_distinct', 'status'],
    ]);
  });

  it('map changes the row type; windows add their bounds; no groups key the row by the view', () => {
    const perDay = fromTable<Order>('public.orders')
      .map((o) => ({ day: o.ordered_at.slice(0, 10), amount: Number(o.total), at: o.ordered_at }))
      .groupBy('day')
      .windowedBy({ tumbling: '1h' })
      .eventTime('at')
      .aggregate({ amount: sum('amount') })
      .to('replica', { table: 'public.per_day' });
    expectTypeOf<RowOf<typeof perDay>>().toEqualTypeOf<{
      readonly day: string;
      readonly window_start: number;
      readonly window_end: number;
      readonly amount: number | bigint | null;
    }>();
    const everything = fromStream<Click>('public.clicks').groupBy().aggregate({ clicks: count() }).to('replica', { table: 'public.clicks' });
    expectTypeOf<RowOf<typeof everything>>().toEqualTypeOf<{ readonly view: string; readonly clicks: number }>();
    const perId = fromTable<Order>('public.orders').groupBy('id').aggregate({ n: count() }).to('replica', { table: 'public.per_id' });
    // Int64 keys within 2^53 are numbers, larger ones their text.
    expectTypeOf<RowOf<typeof perId>>().toEqualTypeOf<{ readonly id: number | string; readonly n: number }>();
    const longest = custom(aggregate({ init: () => 0, add: (s, v) => s + String(v).length, subtract: (s, v) => s - String(v).length, result: (s) => s }), 'page');
    const pages = fromStream<Click>('public.clicks').groupBy('user').aggregate({ chars: longest }).to('replica', { table: 'public.chars' });
    expectTypeOf<RowOf<typeof pages>>().toEqualTypeOf<{ readonly user: string; readonly chars: number }>();
    expect([perDay, everything, perId, pages].map((v) => [v.problems, v.definition.groupBy])).toEqual([
      [[], ['day']],
      [[], []],
      [[], ['id']],
      [[], ['user']],
    ]);
    expect(perDay.definition).toMatchObject({ window: { kind: 'tumbling', sizeMs: 3_600_000 }, eventTime: 'at', reads: undefined });
  });

  it('refuses column names the row does not have', () => {
    const orders = fromTable<Order>('public.orders');
    // @ts-expect-error no column nope
    orders.groupBy('nope');
    // @ts-expect-error no column nope
    orders.groupBy('status').aggregate({ x: sum('nope') });
    // @ts-expect-error no column nope
    orders.groupBy('status').windowedBy({ tumbling: 1000 }).eventTime('nope');
    // @ts-expect-error no column nope
    orders.filter((o) => o.nope === 1);
    const mapped = orders.map((o) => ({ day: o.ordered_at.slice(0, 10) }));
    // @ts-expect-error status is not a column of the mapped row
    mapped.groupBy('status');
    // @ts-expect-error not a duration
    orders.groupBy('status').windowedBy({ tumbling: 'an hour' });
    // @ts-expect-error a table id of results is <schema>.<table>
    orders.groupBy('status').aggregate({ n: count() }).to('replica', { table: 'results' });
    expect(orders.groupBy('status').aggregate({ n: count() }).to('replica', { table: 'public.results' }).problems).toEqual([]);
  });
});

describe('the view DSL compiles to the plan of the equivalent YAML view', () => {
  it('filter and groups: the same contributions and results as `where` and `group_by`', () => {
    const yaml = yamlPlan('revenue', {
      from: { table: 'public.orders' },
      where: { field: 'status', not_equals: 'cancelled' },
      group_by: ['customer_id'],
      aggregations: {
        orders: { fn: 'count' },
        revenue: { fn: 'sum', column: 'total' },
        biggest: { fn: 'max', column: 'total' },
        average: { fn: 'avg', column: 'total' },
        spread: { fn: 'stddev_samp', column: 'weight' },
        kinds: { fn: 'count_distinct', column: 'qty' },
      },
    });
    const dsl = planView(
      'revenue',
      fromTable<Order>('public.orders')
        .filter((o) => o.status !== 'cancelled')
        .groupBy('customer_id')
        .aggregate({ orders: count(), revenue: sum('total'), biggest: max('total'), average: avg('total'), spread: stddev_samp('weight'), kinds: countDistinct('qty') })
        .to('out', { table: 'public.results' }).definition,
    );
    const expected = contributionsOf(yaml, ORDERS);
    expect(expected.flat().length).toBe(4);
    expect(contributionsOf(dsl, ORDERS)).toEqual(expected);
    expect(resultsOf(dsl, contributionsOf(dsl, ORDERS))).toEqual(resultsOf(yaml, expected));
    expect(resultsOf(yaml, expected)).toEqual({
      '["a"]': [1, '10.50', '10.50', '10.5000000000000000', null, 1],
      '["b"]': [2, '8.25', '7.25', '4.1250000000000000', 1.2374368670764582, 2],
      '["c"]': [1, '3.10', '3.10', '3.1000000000000000', null, 1],
    });
    const input = [
      { name: 'customer_id', type: 'string', semantic: undefined, optional: false, parameters: undefined, items: undefined },
      { name: 'total', type: 'bytes', semantic: 'io.debezium.data.VariableScaleDecimal', optional: false, parameters: undefined, items: undefined },
    ] as const;
    expect(dsl.resultColumns(input)).toEqual(yaml.resultColumns(input));
    expect({ ...dsl, image: 0, contributions: 0, eventTimeOf: 0, resultColumns: 0, aggregations: 0, columns: 0 }).toEqual({
      ...yaml,
      image: 0,
      contributions: 0,
      eventTimeOf: 0,
      resultColumns: 0,
      aggregations: 0,
      columns: 0,
    });
  });

  it('tumbling windows on a column, hopping windows on the commit time of a stream, no groups', () => {
    const hourly = yamlPlan('hourly', {
      from: { table: 'public.orders' },
      group_by: ['status'],
      window: { tumbling: '1h' },
      event_time: 'ordered_at',
      aggregations: { orders: { fn: 'count' }, revenue: { fn: 'sum', column: 'total' } },
    });
    const hourlyDsl = planView(
      'hourly',
      fromTable<Order>('public.orders')
        .groupBy('status')
        .windowedBy({ tumbling: 3_600_000 })
        .eventTime('ordered_at')
        .aggregate({ orders: count(), revenue: sum('total') })
        .to('out', { table: 'public.results' }).definition,
    );
    expect(contributionsOf(hourlyDsl, ORDERS)).toEqual(contributionsOf(hourly, ORDERS));
    expect(contributionsOf(hourly, ORDERS)[3]![0]!.groupKey).toEqual({ status: 'new', window_start: 1_714_564_800_000, window_end: 1_714_568_400_000 });

    const hopping = yamlPlan('hopping', {
      from: { stream: 'public.orders' },
      window: { hopping: { size: '2h', advance: '1h' } },
      aggregations: { n: { fn: 'count' }, qty: { fn: 'var_pop', column: 'qty' } },
    });
    const hoppingDsl = planView(
      'hopping',
      fromStream<Order>('public.orders')
        .groupBy()
        .windowedBy({ hopping: { size: '2h', advance: '1h' } })
        .aggregate({ n: count(), qty: var_pop('qty') })
        .to('out', { table: 'public.results' }).definition,
    );
    const expected = contributionsOf(hopping, ORDERS);
    expect(expected.every((c) => c.length === 2)).toBe(true);
    expect(contributionsOf(hoppingDsl, ORDERS)).toEqual(expected);
    expect(resultsOf(hoppingDsl, contributionsOf(hoppingDsl, ORDERS))).toEqual(resultsOf(hopping, expected));

    const total = yamlPlan('total', { from: { table: 'public.orders' }, aggregations: { n: { fn: 'count' } } });
    const totalDsl = planView('total', fromTable<Order>('public.orders').groupBy().aggregate({ n: count() }).to('out', { table: 'public.results' }).definition);
    expect(contributionsOf(totalDsl, ORDERS)).toEqual(contributionsOf(total, ORDERS));
  });

  it('map runs on the stored image, so retracting an old image gives what adding it gave; null-returning steps drop', () => {
    const plan = planView(
      'per_day',
      fromTable<Order>('public.orders')
        .filter((o) => o.status !== 'cancelled')
        .map((o) => ({ day: o.ordered_at.slice(0, 10), amount: o.qty * 2 }))
        .filter((d) => d.amount < 10)
        .groupBy('day')
        .aggregate({ amount: sum('amount'), n: count() })
        .to('out', { table: 'public.results' }).definition,
    );
    const images = ORDERS.map((row, i) => plan.image(event(row, i), row, null));
    // The image is the row (a function may read any column), not its mapped form.
    expect(images[0]).toEqual(ORDERS[0]);
    expect(images.map((img) => plan.contributions(img))).toEqual([
      [{ groupId: '["2024-05-01"]', groupKey: { day: '2024-05-01' }, values: [4, null] }],
      [],
      [],
      [{ groupId: '["2024-05-01"]', groupKey: { day: '2024-05-01' }, values: [2, null] }],
      [{ groupId: '["2024-05-02"]', groupKey: { day: '2024-05-02' }, values: [6, null] }],
    ]);
    expect(plan.contributions(images[0]!)).toEqual(plan.contributions(images[0]!));
    // The mapped row's column types are its own: the results carry no schema rather than a wrong one.
    expect(plan.resultColumns([])).toBeUndefined();
  });

  it('with a function the image is the whole row: unchanged TOASTed values come from the stored image, or fail the record', () => {
    const plan = planView(
      'toast',
      fromTable<Order>('public.orders')
        .filter((o) => o.status === 'paid')
        .groupBy('customer_id')
        .aggregate({ n: count() })
        .to('out', { table: 'public.results' }).definition,
    );
    const stored = plan.image(event(ORDERS[0]!, 0), ORDERS[0]!, null);
    const update = { ...ORDERS[0]!, customer_id: 'z', status: UNAVAILABLE };
    const image = plan.image(event(update, 1), update, stored);
    expect(image).toEqual({ ...ORDERS[0], customer_id: 'z' });
    expect(plan.contributions(image)).toEqual([{ groupId: '["z"]', groupKey: { customer_id: 'z' }, values: [null] }]);
    expect(() => plan.image(event(update, 1), update, null)).toThrow(
      expect.objectContaining({ code: 'VIEW_UNAVAILABLE', message: expect.stringContaining('view toast: column status is an unchanged TOASTed value') }),
    );
  });

  it('a custom aggregation reads a column, or the whole mapped row without one', () => {
    const longest = aggregate<number[]>({
      init: () => [],
      add: (s, v) => [...s, Number(v)].sort((a, b) => a - b),
      subtract: (s, v) => {
        const i = s.indexOf(Number(v));
        return [...s.slice(0, i), ...s.slice(i + 1)];
      },
      result: (s) => s.at(-1) ?? null,
    });
    const perRow = aggregate<number>({
      init: () => 0,
      add: (s, row) => s + (row as { qty: number }).qty * 10,
      subtract: (s, row) => s - (row as { qty: number }).qty * 10,
    });
    const plan = planView(
      'custom',
      fromTable<Order>('public.orders')
        .groupBy('customer_id')
        .aggregate({ top: custom(longest, 'qty'), weighted: custom(perRow) })
        .to('out', { table: 'public.results' }).definition,
    );
    expect(resultsOf(plan, contributionsOf(plan, ORDERS))).toEqual({ '["a"]': [2, 30], '["b"]': [5, 60], '["c"]': [3, 30] });
  });

  it("a user's function that throws fails the record with the view's name and a ViewInputError", () => {
    const plan = planView(
      'fragile',
      fromTable<Order>('public.orders')
        .map((o) => ({ day: o.ordered_at.slice(0, 10) }))
        .groupBy('day')
        .aggregate({ n: count() })
        .to('out', { table: 'public.results' }).definition,
    );
    const row = { id: 9, ordered_at: null };
    const fail = (() => {
      try {
        plan.contributions(plan.image(event(row, 0), row, null));
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(fail).toBeInstanceOf(ViewInputError);
    expect(fail).toMatchObject({ code: 'VIEW_FUNCTION_FAILED', retriable: false, message: expect.stringMatching(/^view fragile: its map function threw: /) });
  });
});

describe('views of the handlers module', () => {
  const base = {
    kafka: { brokers: ['127.0.0.1:9092'], topics: ['a.public.orders'] },
    sinks: { out: { kind: 'file', path: '/tmp/x.jsonl' } },
    routes: [],
    state: { connection_string: 'postgres://x@127.0.0.1/test' },
  };
  const fixture = (name: string) => resolve(import.meta.dirname, `../fixtures/handlers/${name}.ts`);

  async function issuesOf(doc: unknown): Promise<ConfigIssue[]> {
    const err = await resolveConfig(doc, { env: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(err)}`);
    return [...err.issues];
  }

  it('are merged with the config file views', async () => {
    const config = await resolveConfig(
      {
        ...base,
        handlers: fixture('views'),
        views: { per_status: { from: { table: 'public.orders' }, group_by: ['status'], aggregations: { n: { fn: 'count' } }, to: { sink: 'out', table: 'public.per_status' } } },
      },
      { env: {} },
    );
    expect(Object.keys(config.views).sort()).toEqual(['clicks_per_page', 'per_status', 'revenue_per_customer']);
    expect(config.views.revenue_per_customer).toMatchObject({ input: 'public.orders', mode: 'table', groupBy: ['customer_id'], output: { sink: 'out', table: 'public.revenue_per_customer' } });
    expect(config.views.clicks_per_page).toMatchObject({ input: 'public.clicks', mode: 'stream' });
    expect(config.views.per_status).toMatchObject({ input: 'public.orders', mode: 'table', groupBy: ['status'], reads: [] });
    expect(planView('revenue_per_customer', config.views.revenue_per_customer!).aggregations.map((a) => [a.name, a.fn, a.column])).toEqual([
      ['orders', 'count', undefined],
      ['revenue', 'sum', 'total'],
      ['biggest', 'max', 'total'],
    ]);
  });

  it('a name in both the config file and the module, an unknown sink, a bad definition, no state: each an issue with its path', async () => {
    const clash = await issuesOf({
      ...base,
      handlers: fixture('views'),
      views: { clicks_per_page: { from: { stream: 'public.clicks' }, aggregations: { n: { fn: 'count' } }, to: { sink: 'out', table: 'public.c' } } },
    });
    expect(clash).toEqual([{ path: 'handlers.views.clicks_per_page', message: 'view clicks_per_page is also defined in the config file (views.clicks_per_page)' }]);

    const { state: _state, ...stateless } = base;
    expect(await issuesOf({ ...stateless, handlers: fixture('views') })).toEqual([
      { path: 'state', message: 'views need a state connection (state.connection_string)' },
    ]);

    expect(await issuesOf({ ...base, handlers: fixture('views-invalid') })).toEqual([
      { path: 'handlers.views.per_hour', message: 'window hopping.advance must not exceed size' },
      { path: 'handlers.views.per_hour', message: 'a windowed view of a table needs eventTime(column) (commit_time is not kept by a replayed snapshot)' },
      { path: 'handlers.views.per_hour.to.sink', message: 'no sink named "elsewhere"' },
    ]);
  });

  it('the typed form of defineHandlers passes views through', () => {
    const view = fromStream<Click>('public.clicks').groupBy('page').aggregate({ n: count() }).to('out', { table: 'public.p' });
    expect(defineHandlers<{ 'public.clicks': Click }>()({ views: { p: view } }).views).toEqual({ p: view });
  });
});
