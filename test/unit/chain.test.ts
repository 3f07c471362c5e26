import { describe, expect, it } from 'vitest';
import { TransformError } from '../../src/errors.ts';
import type { ChangeEvent, Op } from '../../src/model/change-event.ts';
import { position } from '../../src/model/position.ts';
import { buildTransforms } from '../../src/compose/transform-kinds.ts';
import { compileChain } from '../../src/transform/chain.ts';
import type { NamedTransform, Transform } from '../../src/transform/transform.ts';

function event(op: Op, after: Record<string, unknown> | null = { id: 1 }): ChangeEvent {
  return {
    kind: 'change',
    op,
    table: { id: 'public.users', db: 'app', schema: 'public', table: 'users' },
    key: { id: 1 },
    before: null,
    after,
    source: {
      connector: 'postgresql',
      name: 'app',
      db: 'app',
      schema: 'public',
      table: 'users',
      tsMs: undefined,
      snapshot: undefined,
      raw: {},
    },
    position: position('kafka-offset', [1n]),
    tsMs: undefined,
    kafka: { topic: 'app.public.users', partition: 3, offset: '17', timestamp: 0 },
    columns: undefined,
  };
}

const named = (name: string, apply: Transform): NamedTransform => ({ name, apply });
const tag = (label: string): Transform => (e) => ({ ...e, after: { ...e.after, trail: `${String(e.after?.['trail'] ?? '')}${label}` } });

describe('compileChain', () => {
  it('runs transforms in order', () => {
    const chain = compileChain([named('a', tag('a')), named('b', tag('b')), named('c', tag('c'))]);
    expect(chain(event('c'))?.after).toEqual({ id: 1, trail: 'abc' });
  });

  it('is the identity without transforms', () => {
    const e = event('c');
    expect(compileChain([])(e)).toBe(e);
  });

  it('stops at the first null', () => {
    const calls: string[] = [];
    const spy =
      (name: string, result: 'pass' | 'drop'): Transform =>
      (e) => {
        calls.push(name);
        return result === 'drop' ? null : e;
      };
    const chain = compileChain([named('a', spy('a', 'pass')), named('b', spy('b', 'drop')), named('c', spy('c', 'pass'))]);
    expect(chain(event('c'))).toBeNull();
    expect(calls).toEqual(['a', 'b']);
  });

  it('wraps a throw in a TransformError with coordinates, transform name and cause', () => {
    const boom = new Error('boom');
    const chain = compileChain([
      named('0:ok', (e) => e),
      named('1:bad', () => {
        throw boom;
      }),
    ]);
    let caught: unknown;
    try {
      chain(event('u'));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TransformError);
    const err = caught as TransformError;
    expect(err.transform).toBe('1:bad');
    expect(err.at).toEqual({ topic: 'app.public.users', partition: 3, offset: '17' });
    expect(err.cause).toBe(boom);
    expect(err.retriable).toBe(false);
    expect(err.stage).toBe('transform');
    expect(err.message).toBe('app.public.users/3@17: transform 1:bad: boom');
  });

  it('wraps non-Error throws and rejects undefined results', () => {
    const chain = compileChain([
      named('x', () => {
        throw 'text';
      }),
    ]);
    expect(() => chain(event('c'))).toThrow(/transform x: text/);
    const loose = compileChain([named('y', (() => undefined) as unknown as Transform)]);
    expect(() => loose(event('c'))).toThrow(TransformError);
  });

  it('does not wrap a TransformError from a nested chain twice', () => {
    const inner = compileChain([
      named('inner', () => {
        throw new Error('deep');
      }),
    ]);
    const outer = compileChain([named('outer', inner)]);
    expect(() => outer(event('c'))).toThrow(expect.objectContaining({ transform: 'inner' }));
  });
});

describe('buildTransforms', () => {
  it('builds built-in transforms named by index and kind', () => {
    const transforms = buildTransforms([
      { kind: 'filter', ops: ['c', 'u'] },
      { kind: 'rename_fields', fields: { id: 'user_id' } },
      { kind: 'flatten', delete_handling: 'rewrite', drop_truncates: false, add_fields: ['op'] },
    ]);
    expect(transforms.map((t) => t.name)).toEqual(['0:filter', '1:rename_fields', '2:flatten']);
    const chain = compileChain(transforms);
    expect(chain(event('c'))?.after).toEqual({ user_id: 1, __op: 'c', __deleted: false });
    expect(chain(event('c'))?.key).toEqual({ user_id: 1 });
    expect(chain(event('d', null))).toBeNull();
  });
});
