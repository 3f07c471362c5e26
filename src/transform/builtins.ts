import type { z } from 'zod';
import { builtinTransformKinds } from '../compose/transform-kinds.ts';
import type { TypedChangeEvent } from '../model/typed-event.ts';
import type { TransformFactory } from './transform.ts';
import { toTyped } from './typed.ts';

/*
 * The built-in transforms as functions for TypeScript handlers, typed by what they do to the row.
 * Each validates its options with the kind's own schema (a bad option throws when the handlers
 * module loads) and runs the same code as the config's `kind:` entry.
 */

const { filter: filterTransform, drop_fields: dropFieldsTransform, rename_fields: renameFieldsTransform, flatten: flattenTransform } =
  builtinTransformKinds;

function build<S extends z.ZodTypeAny>(factory: TransformFactory<S>, options: z.input<S>) {
  return factory.create(factory.configSchema.parse(options) as z.infer<S>);
}

/** Keeps events by op and by a predicate on one column (config kind `filter`). */
export function filter(options: z.input<typeof filterTransform.configSchema>) {
  const transform = build(filterTransform, options);
  return <R extends object>(event: TypedChangeEvent<R>): TypedChangeEvent<R> | null => toTyped<R>(transform)(event);
}

/** Removes columns from the row images; key columns stay in the key (config kind `drop_fields`). */
export function dropFields<const K extends string>(fields: readonly [K, ...K[]]) {
  const transform = build(dropFieldsTransform, { fields: [...fields] });
  return <R extends object>(event: TypedChangeEvent<R>): TypedChangeEvent<Omit<R, K>> | null =>
    toTyped<R, Omit<R, K>>(transform)(event);
}

/** Row type after renaming columns by `M` (old name to new name). */
export type Renamed<R, M extends Readonly<Record<string, string>>> = {
  [K in keyof R as K extends keyof M ? M[K] : K]: R[K];
};

/** Renames columns in before, after and key, simultaneously (config kind `rename_fields`). */
export function renameFields<const M extends Readonly<Record<string, string>>>(fields: M) {
  const transform = build(renameFieldsTransform, { fields });
  return <R extends object>(event: TypedChangeEvent<R>): TypedChangeEvent<Renamed<R, M>> | null =>
    toTyped<R, Renamed<R, M>>(transform)(event);
}

/**
 * Debezium's ExtractNewRecordState (config kind `flatten`). The rows gain metadata columns, and in
 * `rewrite` mode a delete becomes an update whose row may hold only the key: hence `Partial<R>`.
 */
export function flatten(options: z.input<typeof flattenTransform.configSchema> = {}) {
  const transform = build(flattenTransform, options);
  return <R extends object>(event: TypedChangeEvent<R>): TypedChangeEvent<Partial<R> & Record<string, unknown>> | null =>
    toTyped<R, Partial<R> & Record<string, unknown>>(transform)(event);
}
