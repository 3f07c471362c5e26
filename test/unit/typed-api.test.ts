import { resolve } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { TransformError } from '../../src/errors.ts';
import {
  defineHandler,
  defineHandlers,
  dropFields,
  filter,
  flatten,
  renameFields,
  type ChangeEvent,
  type Int64,
  type Toastable,
} from '../../src/index.ts';
import type { ChangeEvent as CoreEvent } from '../../src/model/change-event.ts';
import { compileChain } from '../../src/transform/chain.ts';
import { changeEvent, runHandlers } from '../../src/testing/index.ts';

interface Customer {
  id: Int64;
  email: string;
  notes: Toastable<string>;
}

interface Order {
  id: number;
  total: string;
}

const customer = (op: 'c' | 'u', email: string) =>
  changeEvent<Customer>({ table: 'public.customers', op, after: { id: 1, email, notes: 'n' } });

describe('typed change events', () => {
  it('narrow by op: rows exist where the op says so', () => {
    const check = (event: ChangeEvent<Customer>) => {
      switch (event.op) {
        case 'c':
        case 'r':
          expectTypeOf(event.after).toEqualTypeOf<Readonly<Customer>>();
          expectTypeOf(event.before).toEqualTypeOf<null>();
          return event.after.email;
        case 'u':
          expectTypeOf(event.before).toEqualTypeOf<Readonly<Partial<Customer>> | null>();
          return event.after.email;
        case 'd':
          expectTypeOf(event.after).toEqualTypeOf<null>();
          return event.before?.email;
        case 't':
          expectTypeOf(event.before).toEqualTypeOf<null>();
          return undefined;
      }
    };
    expect(check(customer('c', 'a@x'))).toBe('a@x');
    expect(check(changeEvent<Customer>({ table: 'public.customers', op: 'd', before: { id: 1, email: 'b@x' } }))).toBe('b@x');
    // @ts-expect-error a delete has no after: `after` may be null before narrowing
    expect(() => (customer('c', 'x') as ChangeEvent<Customer>).after.email).not.toThrow();
  });

  it('the event builder refuses images that do not fit the op', () => {
    expect(() => changeEvent({ table: 'public.t', op: 'c' })).toThrow('changeEvent: op "c" change has no "after" row');
    expect(() => changeEvent({ table: 'public.t', op: 'd', after: { id: 1 } })).toThrow('a delete has an "after" row');
    expect(changeEvent({ table: 'public.t', op: 'c', after: { id: 7 } }).key).toEqual({ id: 7 });
  });
});

describe('defineHandlers<Tables>()', () => {
  const handlers = defineHandlers<{ 'public.customers': Customer; 'public.orders': Order }>()({
    tables: {
      'public.customers': {
        sinks: ['search'],
        transforms: [
          function lowerEmail(event) {
            expectTypeOf(event).toEqualTypeOf<ChangeEvent<Customer>>();
            if (event.op === 'd' || event.op === 't') return event;
            if (event.after.email.endsWith('@example.invalid')) return null;
            return { ...event, after: { ...event.after, email: event.after.email.toLowerCase() } };
          },
        ],
      },
      'public.orders': {
        transforms: [(event) => (expectTypeOf(event).toEqualTypeOf<ChangeEvent<Order>>(), event)],
      },
      // @ts-expect-error a table the type map does not name
      'public.nope': { sinks: [] },
    },
  });

  it('types each table by its row and runs its transforms on that table only', () => {
    const [lowered, dropped] = runHandlers(handlers, [customer('c', 'A@B.COM'), customer('u', 'x@example.invalid')]);
    expect(lowered?.after).toEqual({ id: 1, email: 'a@b.com', notes: 'n' });
    expect(dropped).toBeNull();
    expect(handlers.handlers?.map((h) => [h.table, h.sinks])).toEqual([
      ['public.customers', ['search']],
      ['public.orders', undefined],
      ['public.nope', []],
    ]);
  });

  it('a transform that returns a change its op does not allow fails, named', () => {
    const broken = defineHandler<Customer>({
      table: 'public.customers',
      // What a handler in plain JavaScript could do: a create without a row.
      transforms: [function loseRow(event) { return { ...event, after: null } as unknown as ChangeEvent<Customer>; }],
    });
    const chain = compileChain(broken.transforms!.map((apply) => ({ name: `h:${apply.name}`, apply })));
    expect(() => chain(customer('c', 'a@b') as unknown as CoreEvent)).toThrow(TransformError);
    expect(() => chain(customer('c', 'a@b') as unknown as CoreEvent)).toThrow(/h:loseRow.*returned a malformed change: op "c" change has no "after" row/);
  });

  it('the old form, defineHandlers({ handlers: [defineHandler<R>(…)] }), still works', () => {
    const module = defineHandlers({
      handlers: [defineHandler<Customer>({ table: 'public.customers', transforms: [(e) => (e.op === 'c' ? e : null)] })],
    });
    expect(runHandlers(module, [customer('c', 'a'), customer('u', 'b')]).map((e) => e?.op ?? null)).toEqual(['c', null]);
  });
});

describe('built-in transforms as typed functions', () => {
  const event = changeEvent<Customer>({ table: 'public.customers', op: 'c', after: { id: 1, email: 'a', notes: 'n' } });

  it('drop_fields and rename_fields change the row type as they change the row', () => {
    const dropped = dropFields(['notes'])(event);
    expectTypeOf(dropped).toEqualTypeOf<ChangeEvent<Omit<Customer, 'notes'>> | null>();
    expect(dropped?.after).toEqual({ id: 1, email: 'a' });
    const renamed = renameFields({ email: 'mail' } as const)(event);
    expectTypeOf(renamed).toEqualTypeOf<ChangeEvent<{ id: Int64; mail: string; notes: Toastable<string> }> | null>();
    expect(renamed?.after).toEqual({ id: 1, mail: 'a', notes: 'n' });
  });

  it('filter and flatten run the config kinds, with their options validated', () => {
    expect(filter({ exclude_ops: ['c'] })(event)).toBeNull();
    expect(filter({ where: { field: 'email', equals: 'a' } })(event)).toBe(event);
    expect(flatten({ add_fields: ['op'] })(event)?.after).toEqual({ id: 1, email: 'a', notes: 'n', __op: 'c' });
    // @ts-expect-error not an op
    expect(() => filter({ ops: ['x'] })).toThrow(/Invalid enum value/);
  });
});

describe('transformKinds of the handlers module', () => {
  const handlers = resolve(import.meta.dirname, '../fixtures/handlers/transform-kinds.ts');
  const doc = (transforms: unknown[]) => ({
    kafka: { brokers: ['127.0.0.1:9092'], topics: ['a.public.t'] },
    sinks: { out: { kind: 'file', path: '/tmp/x.jsonl' } },
    routes: [{ table: 'public.customers', sinks: ['out'], transforms }],
    handlers,
  });

  it('are usable in the config, with their options validated, and a kind shadowing a built-in one warns', async () => {
    const config = await resolveConfig(doc([{ kind: 'mask', field: 'email' }]), { env: {} });
    const chain = compileChain(config.routes[0]!.transforms);
    expect(chain(customer('c', 'a@b') as unknown as CoreEvent)?.after).toEqual({ id: 1, email: '***', notes: 'n' });
    expect(config.warnings).toEqual([
      {
        path: 'handlers.transformKinds.filter',
        message: 'transform kind "filter" of the handlers module replaces the built-in one of that name',
      },
    ]);
    await expect(resolveConfig(doc([{ kind: 'mask' }]), { env: {} })).rejects.toThrow(/routes\.0\.transforms\.0\.field/);
  });

  it('a config without user kinds has no warnings', async () => {
    const { handlers: _h, ...plain } = doc([{ kind: 'filter', ops: ['c'] }]);
    expect((await resolveConfig(plain, { env: {} })).warnings).toEqual([]);
  });
});
