import type { z } from 'zod';
import type { ChangeEvent, Row } from '../model/change-event.ts';
import { typedEventProblem, type TypedChangeEvent } from '../model/typed-event.ts';
import type { Transform, TransformFactory, TypedTransform } from './transform.ts';

/**
 * A typed transform as the pipeline runs it. Its input and output are checked against the op's
 * invariants (cheap comparisons), so that a handler written in plain JavaScript that returns, say,
 * a create without a row fails here, named, instead of in a sink. The row type itself is the user's
 * claim about the table and cannot be checked at run time.
 */
export function fromTyped<R extends object>(fn: TypedTransform<R>): Transform {
  const run: Transform = (event) => {
    const before = typedEventProblem(event);
    if (before !== undefined) throw new Error(`received a malformed change: ${before}`);
    const out = fn(event as unknown as TypedChangeEvent<R>) as unknown as ChangeEvent | null | undefined;
    if (out === null || out === undefined) return out as null;
    const after = typedEventProblem(out);
    if (after !== undefined) throw new Error(`returned a malformed change: ${after}`);
    return out;
  };
  // The chain names a handler's steps by their function names.
  Object.defineProperty(run, 'name', { value: fn.name });
  return run;
}

/** The typed face of a pipeline transform (the built-ins'). */
export function toTyped<R extends object, Out extends object = R>(transform: Transform): (event: TypedChangeEvent<R>) => TypedChangeEvent<Out> | null {
  return (event) => transform(event as unknown as ChangeEvent) as unknown as TypedChangeEvent<Out> | null;
}

/** A user transform kind: its config schema (zod) and how to build the transform from a parsed config. */
export interface TransformKind<S extends z.ZodTypeAny> {
  readonly kind: string;
  readonly configSchema: S;
  create(config: z.infer<S>): TypedTransform<Row>;
}

/**
 * Defines a transform kind usable in the config's `transforms:` (export it under `transformKinds` of
 * the handlers module). Config entries are validated with `configSchema` at startup; `create` runs
 * once per route entry.
 */
export function defineTransform<S extends z.ZodTypeAny>(kind: TransformKind<S>): TransformFactory<S> {
  return {
    kind: kind.kind,
    configSchema: kind.configSchema,
    create: (config) => fromTyped(kind.create(config)),
  };
}
