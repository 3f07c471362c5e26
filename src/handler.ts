import type { Row } from './model/change-event.ts';
import type { SinkFactory } from './sink/sink.ts';
import type { Transform, TypedTransform } from './transform/transform.ts';

/**
 * A table handler written in TypeScript. Its transforms run after the ones the config file gives the
 * same table; `sinks` adds sinks (by name) to that route, or makes a route when the config has none.
 */
export interface TableHandler<R extends object = Row> {
  readonly table: string;
  readonly transforms?: readonly TypedTransform<R>[];
  readonly sinks?: readonly string[];
}

/** What a handlers module (config `handlers:`) exports as default. */
export interface HandlersModule {
  readonly handlers?: readonly TableHandler[];
  /** Extra sink kinds, usable in the config's `sinks` like the built-in ones. */
  readonly sinkKinds?: Readonly<Record<string, SinkFactory>>;
}

export function defineHandler<R extends object>(handler: TableHandler<R>): TableHandler {
  // A handler typed for its row is applied only to events of its table; widening is safe here.
  return handler as unknown as TableHandler;
}

export function defineHandlers(module: HandlersModule): HandlersModule {
  return module;
}

export function asTransform(fn: TypedTransform<Row>): Transform {
  return fn as Transform;
}
