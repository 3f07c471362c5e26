import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  count,
  fromStream,
  fromTable,
  listState,
  mapState,
  sum,
  valueState,
  type Decimal,
  type ListState,
  type MapState,
  type TypedView,
  type ValueState,
} from '../../src/index.ts';
import type { ChangeEvent, Row } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { planView, type ViewPlan } from '../../src/view/view-plan.ts';

interface Order {
  id: number;
  customer_id: string;
  status: 'paid' | 'new' | 'cancelled';
  total: Decimal;
  tags: string[];
}

interface Refund {
  id: number;
  customer_id: string;
  amount: Decimal;
}

interface Paid extends Order {
  status: 'paid';
}

type RowOf<V> = V extends TypedView<infer R> ? R : never;

function event(table: string, row: Row): ChangeEvent {
  const [schema, name] = table.split('.') as [string, string];
  return {
    kind: 'change',
    op: 'c',
    table: { id: table, db: undefined, schema, table: name },
    key: { id: row['id'] ?? null },
    before: null,
    after: row,
    source: { connector: 'postgresql', name: 't', db: 'shop', schema, table: name, tsMs: 1_714_557_600_000, snapshot: undefined, raw: {} },
    position: position('postgres', [1n]),
    tsMs: 1_714_557_600_000,
    kafka: { topic: table, partition: 0, offset: '0', timestamp: 0 },
    columns: undefined,
  };
}

/** The (group key, values) pairs an image contributes, through the whole plan. */
function contributed(plan: ViewPlan, table: string, row: Row, observe?: 'add' | 'retract'): [Row, unknown[]][] {
  return plan.contributions(plan.image(event(table, row), row, null), observe).map((c) => [c.groupKey, [...c.values]]);
}

const ORDER: Row = { id: 1, customer_id: 'a', status: 'paid', total: '10.50', tags: ['x', 'y', 'x'] };

describe('flatMap, branch, merge, peek: the rows a view groups', () => {
  it('flatMap: each element of a row is grouped; the stored image gives the same elements to retract', () => {
    const view = fromTable<Order>('public.orders')
      .flatMap((o) => o.tags.map((tag) => ({ tag, total: o.total })))
      .groupBy('tag')
      .aggregate({ n: count(), revenue: sum('total') })
      .to('out', { table: 'public.per_tag' });
    expectTypeOf<RowOf<typeof view>>().toEqualTypeOf<{ readonly tag: string; readonly n: number; readonly revenue: string | null }>();
    const plan = planView('per_tag', view.definition);
    const added = contributed(plan, 'public.orders', ORDER, 'add');
    expect(added).toEqual([
      [{ tag: 'x' }, [null, '10.50']],
      [{ tag: 'y' }, [null, '10.50']],
      [{ tag: 'x' }, [null, '10.50']],
    ]);
    // What an update retracts is the stored image's output, computed again: the same elements.
    expect(contributed(plan, 'public.orders', ORDER, 'retract')).toEqual(added);
    expect(contributed(plan, 'public.orders', { ...ORDER, tags: [] })).toEqual([]);
    expect(plan.resultColumns([])).toBeUndefined();
  });

  it('branch: each row goes to the first branch it matches only; type guards narrow the branch', () => {
    const [paid, big, rest] = fromTable<Order>('public.orders').branch(
      (o): o is Paid => o.status === 'paid',
      (o) => Number(o.total) >= 100,
      () => true,
    );
    expectTypeOf(paid.map((o) => ({ s: o.status })).groupBy('s').aggregate({ n: count() }).to('out', { table: 'a.b' })).toEqualTypeOf<
      TypedView<{ readonly s: 'paid'; readonly n: number }>
    >();
    const plans = [paid, big, rest].map((b, i) => planView(`b${i}`, b.groupBy('status').aggregate({ n: count() }).to('out', { table: 'a.b' }).definition));
    const rows: Row[] = [
      { ...ORDER, id: 1, status: 'paid', total: '500.00' },
      { ...ORDER, id: 2, status: 'new', total: '500.00' },
      { ...ORDER, id: 3, status: 'new', total: '5.00' },
      { ...ORDER, id: 4, status: 'cancelled', total: '5.00' },
    ];
    const routed = rows.map((r) => plans.map((p) => contributed(p, 'public.orders', r).length));
    expect(routed).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
      [0, 0, 1],
    ]);
    // Filters and branches keep the input's columns: results keep its schemas.
    expect(plans[0]!.resultColumns([])).toEqual([expect.objectContaining({ name: 'status' }), expect.objectContaining({ name: 'n' })]);
  });

  it('merge: two tables of one row type, each through its own steps, into one view; their keys do not collide', () => {
    const orders = fromTable<Order>('public.orders').map((o) => ({ customer_id: o.customer_id, amount: o.total }));
    const refunds = fromTable<Refund>('public.refunds').map((r) => ({ customer_id: r.customer_id, amount: `-${r.amount}` }));
    const view = orders.merge(refunds).groupBy('customer_id').aggregate({ net: sum('amount'), changes: count() }).to('out', { table: 'public.net' });
    expectTypeOf<RowOf<typeof view>>().toEqualTypeOf<{ readonly customer_id: string; readonly net: string | null; readonly changes: number }>();
    const plan = planView('net', view.definition);
    expect(plan.inputs).toEqual(['public.orders', 'public.refunds']);
    expect(contributed(plan, 'public.orders', ORDER)).toEqual([[{ customer_id: 'a' }, ['10.50', null]]]);
    expect(contributed(plan, 'public.refunds', { id: 1, customer_id: 'a', amount: '2.00' })).toEqual([[{ customer_id: 'a' }, ['-2.00', null]]]);
    // An image remembers its table: a retraction goes through that table's steps.
    const image = plan.image(event('public.refunds', { id: 1, customer_id: 'a', amount: '2.00' }), { id: 1, customer_id: 'a', amount: '2.00' }, null);
    expect(image['__cdc_table']).toBe('public.refunds');
  });

  it('merge: a branch merged back with another sees the row once per branch it reaches', () => {
    const [small, large] = fromTable<Order>('public.orders').branch((o) => Number(o.total) < 100, () => true);
    const view = small
      .map((o) => ({ size: 'small', total: o.total }))
      .merge(large.map((o) => ({ size: 'large', total: o.total })))
      .groupBy('size')
      .aggregate({ n: count() })
      .to('out', { table: 'public.sizes' });
    const plan = planView('sizes', view.definition);
    expect(plan.inputs).toEqual(['public.orders']);
    expect(contributed(plan, 'public.orders', ORDER).map(([k]) => k)).toEqual([{ size: 'small' }]);
    expect(contributed(plan, 'public.orders', { ...ORDER, total: '100.00' }).map(([k]) => k)).toEqual([{ size: 'large' }]);
  });

  it('merge of a table with a stream is a problem of the definition', () => {
    const view = fromTable<Order>('public.orders').merge(fromStream<Order>('public.orders_log')).groupBy().aggregate({ n: count() }).to('out', { table: 'a.b' });
    expect(view.problems).toEqual(['merge: a table cannot be merged with a stream (read both with fromTable, or both with fromStream)']);
  });

  it('peek sees each row added or retracted, never a row only read for its time, and changes nothing', () => {
    const seen: [string, number][] = [];
    const view = fromTable<Order>('public.orders')
      .peek((o, change) => seen.push([change, o.id]))
      .groupBy('customer_id')
      .aggregate({ n: count() })
      .to('out', { table: 'a.b' });
    const plan = planView('peeked', view.definition);
    const img = plan.image(event('public.orders', ORDER), ORDER, null);
    expect(plan.contributions(img, 'add')).toEqual(planView('plain', fromTable<Order>('public.orders').groupBy('customer_id').aggregate({ n: count() }).to('out', { table: 'a.b' }).definition).contributions(img));
    plan.contributions(img, 'retract');
    plan.contributions(img);
    expect(seen).toEqual([
      ['add', 1],
      ['retract', 1],
    ]);
  });

  it("a step that throws names itself in the record's error", () => {
    const view = fromStream<Order>('public.orders')
      .flatMap((o): { t: string }[] => {
        if (o.tags.length === 0) throw new Error('no tags');
        return o.tags.map((t) => ({ t }));
      })
      .groupBy('t')
      .aggregate({ n: count() })
      .to('out', { table: 'a.b' });
    const plan = planView('throws', view.definition);
    expect(() => contributed(plan, 'public.orders', { ...ORDER, tags: [] })).toThrow(
      expect.objectContaining({ code: 'VIEW_FUNCTION_FAILED', message: 'view throws: its flatMap function threw: no tags' }),
    );
  });
});

describe('process: keyed state, typed', () => {
  it('state handles, key and result types follow from the declaration', () => {
    const view = fromStream<Order>('public.orders')
      .groupBy('customer_id')
      .process({
        state: { total: valueState<number>(), recent: listState<string>(), perStatus: mapState<number>() },
        ttl: { after: '1h', clock: 'event_time' },
        apply(order, ctx) {
          expectTypeOf(ctx.key).toEqualTypeOf<{ readonly customer_id: string }>();
          expectTypeOf(ctx.state.total).toEqualTypeOf<ValueState<number>>();
          expectTypeOf(ctx.state.recent).toEqualTypeOf<ListState<string>>();
          expectTypeOf(ctx.state.perStatus).toEqualTypeOf<MapState<number>>();
          const total = (ctx.state.total.get() ?? 0) + Number(order.total);
          ctx.state.total.set(total);
          return { total, last: order.status };
        },
      })
      .to('out', { table: 'public.totals' });
    expectTypeOf<RowOf<typeof view>>().toEqualTypeOf<{ readonly customer_id: string; readonly total: number; readonly last: 'paid' | 'new' | 'cancelled' }>();
    expect(view.problems).toEqual([]);
    const plan = planView('totals', view.definition);
    expect(plan.process?.ttl).toEqual({ afterMs: 3_600_000, clock: 'event_time' });
    expect(plan.process?.state).toEqual({ total: 'value', recent: 'list', perStatus: 'map' });
    expect(plan.keyColumns).toEqual(['customer_id']);
    // A process may read any column: the image keeps the whole row.
    expect(plan.image(event('public.orders', ORDER), ORDER, null)).toEqual(ORDER);
  });

  it('a bad TTL is a problem of the definition; a process is not offered after windowedBy', () => {
    const view = fromStream<Order>('public.orders')
      .groupBy()
      // @ts-expect-error: not a duration
      .process({ ttl: { after: '5 minutes' }, apply: () => ({ n: 1 }) })
      .to('out', { table: 'a.b' });
    expect(view.problems).toEqual([expect.stringMatching(/^process ttl.after: 5 minutes is not a duration/)]);
    const windowed = fromStream<Order>('public.orders').groupBy().windowedBy({ tumbling: '1h' });
    // @ts-expect-error: process has no windows
    windowed.process({ apply: () => ({ n: 1 }) });
  });
});
