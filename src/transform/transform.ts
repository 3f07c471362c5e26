import type { z } from 'zod';
import type { ChangeEvent, Row } from '../model/change-event.ts';
import type { TypedChangeEvent } from '../model/typed-event.ts';

/**
 * A transform is a pure, synchronous function of one event. It returns the event to pass on
 * (the same object or a new one) or null to drop it. I/O belongs to sinks, never to transforms.
 */
export type Transform = (event: ChangeEvent) => ChangeEvent | null;

/**
 * A transform as a user writes it, typed by the table's row: it narrows on `op` and may return a
 * change of another row shape (a column added or removed) or null to drop the event.
 */
export type TypedTransform<R extends object = Row> = (event: TypedChangeEvent<R>) => TypedChangeEvent<object> | null;

export interface NamedTransform {
  readonly name: string;
  readonly apply: Transform;
}

/** A transform kind usable in the config's `transforms:`: its config schema and how to build it once at startup. */
export interface TransformFactory<S extends z.ZodTypeAny = z.ZodTypeAny, K extends string = string> {
  readonly kind: K;
  readonly configSchema: S;
  create(config: z.infer<S>): Transform;
}

/** For the built-in transforms, which work on the pipeline's flat events. */
export function defineBuiltinTransform<S extends z.ZodTypeAny, const K extends string>(factory: TransformFactory<S, K>): TransformFactory<S, K> {
  return factory;
}
