import type { SinkFactory } from './sink/sink.ts';
import type { Transform, TransformFactory, TypedTransform } from './transform/transform.ts';
import { fromTyped } from './transform/typed.ts';
import type { TypedView } from './view/dsl.ts';

/** What one table gets from a handlers module: transforms (after the config's) and extra sinks. */
export interface TableSpec<R extends object> {
  /** Run after the transforms the config file gives the table, in order. */
  readonly transforms?: readonly TypedTransform<R>[];
  /** Sinks (by name) added to the table's route; a table the config has no route for gets one. */
  readonly sinks?: readonly string[];
}

/** A table handler typed by its row; `defineHandler` turns it into a `RouteHandler`. */
export interface TableHandler<R extends object> extends TableSpec<R> {
  readonly table: string;
}

/** A handler as the config loader applies it: transforms on the pipeline's events. */
export interface RouteHandler {
  readonly table: string;
  readonly transforms?: readonly Transform[];
  readonly sinks?: readonly string[];
}

/** What a handlers module (config `handlers:`) exports as default. */
export interface HandlersModule {
  readonly handlers?: readonly RouteHandler[];
  /** Extra sink kinds, usable in the config's `sinks` like the built-in ones. */
  readonly sinkKinds?: Readonly<Record<string, SinkFactory>>;
  /** Extra transform kinds (`defineTransform`), usable in the config's `transforms` like the built-in ones. */
  readonly transformKinds?: Readonly<Record<string, TransformFactory>>;
  /** Views by name (`fromTable<Order>(…)…to(…)`), beside the config's `views:`; a name must not be in both. */
  readonly views?: Readonly<Record<string, TypedView>>;
}

/** A handlers module typed by a map from table id to row type. */
export interface TypedHandlers<T extends { [K in keyof T]: object }> {
  readonly tables?: { readonly [K in keyof T & string]?: TableSpec<T[K]> };
  readonly sinkKinds?: HandlersModule['sinkKinds'];
  readonly transformKinds?: HandlersModule['transformKinds'];
  readonly views?: HandlersModule['views'];
}

/** One table's handler; the row type `R` is the user's statement about the table. */
export function defineHandler<R extends object>(handler: TableHandler<R>): RouteHandler {
  const { table, sinks } = handler;
  return { table, sinks, transforms: handler.transforms?.map((fn) => fromTyped(fn)) };
}

/**
 * `defineHandlers<{ 'public.customers': Customer }>()({ tables: { 'public.customers': {...} } })`:
 * the row type follows the table id. `defineHandlers({ handlers: [defineHandler<R>(…)] })` also works.
 */
export function defineHandlers<T extends { [K in keyof T]: object }>(): (module: TypedHandlers<T>) => HandlersModule;
export function defineHandlers(module: HandlersModule): HandlersModule;
export function defineHandlers(
  module?: HandlersModule,
): HandlersModule | ((module: TypedHandlers<Record<string, object>>) => HandlersModule) {
  if (module !== undefined) return module;
  return (typed) => ({
    handlers: Object.entries(typed.tables ?? {}).map(([table, spec]) => defineHandler({ table, ...spec })),
    sinkKinds: typed.sinkKinds,
    transformKinds: typed.transformKinds,
    views: typed.views,
  });
}
