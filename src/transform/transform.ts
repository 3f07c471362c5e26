import type { z } from 'zod';
import type { ChangeEvent } from '../model/change-event.ts';

/**
 * A transform is a pure, synchronous function of one event. It returns the event to pass on
 * (the same object or a new one) or null to drop it. I/O belongs to sinks, never to transforms.
 */
export type Transform = (event: ChangeEvent) => ChangeEvent | null;

/** A transform as a user writes it in a TypeScript table handler, typed by the table's row. */
export type TypedTransform<R extends object> = (event: ChangeEvent<R>) => ChangeEvent<R> | ChangeEvent | null;

export interface NamedTransform {
  readonly name: string;
  readonly apply: Transform;
}

/** A built-in transform kind: its config schema and how to build it once at startup. */
export interface TransformFactory<S extends z.ZodTypeAny = z.ZodTypeAny> {
  readonly kind: string;
  readonly configSchema: S;
  create(config: z.infer<S>): Transform;
}

export function defineTransform<S extends z.ZodTypeAny>(factory: TransformFactory<S>): TransformFactory<S> {
  return factory;
}
