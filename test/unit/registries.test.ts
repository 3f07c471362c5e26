import { describe, expect, it } from 'vitest';
import { byKind } from '../../src/compose/by-kind.ts';
import { builtinSinkKinds } from '../../src/compose/sink-kinds.ts';
import { builtinTransformKinds } from '../../src/compose/transform-kinds.ts';

describe('built-in registries', () => {
  it('file every sink and transform under its own kind', () => {
    for (const [kind, factory] of Object.entries(builtinSinkKinds)) expect(factory.kind).toBe(kind);
    for (const [kind, factory] of Object.entries(builtinTransformKinds)) expect(factory.kind).toBe(kind);
  });

  it('refuse, at compile time, a factory filed under another kind', () => {
    // The check is the compiler's (tsc --noEmit covers test/): an unused expect-error fails it.
    // @ts-expect-error: key "postgres" holds the factory of kind "file"
    const wrong = byKind({ postgres: builtinSinkKinds.file });
    expect(wrong.postgres.kind).toBe('file');
    // @ts-expect-error: key "filter" holds the transform of kind "flatten"
    expect(byKind({ filter: builtinTransformKinds.flatten }).filter.kind).toBe('flatten');
  });
});
