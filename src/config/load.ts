import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.ts';
import type { HandlersModule, RouteHandler } from '../handler.ts';
import { builtinSinkKinds } from '../compose/sink-kinds.ts';
import { builtinTransformKinds } from '../compose/transform-kinds.ts';
import type { SinkFactory } from '../sink/sink.ts';
import type { RateLimits } from '../sink/token-bucket.ts';
import type { NamedTransform, Transform, TransformFactory } from '../transform/transform.ts';
import type { TypedView } from '../view/dsl.ts';
import { definitionFromConfig, type ViewDefinition } from '../view/view-plan.ts';
import { importUserModule } from './import-module.ts';
import { configSchema, type DlqConfig, type KafkaConfig, type MetricsConfig, type RawConfig, type RetryConfig } from './schema.ts';

export interface SinkSpec {
  readonly name: string;
  readonly kind: string;
  readonly factory: SinkFactory;
  readonly config: unknown;
  /** `rate_limit` of the sink block, absent when unlimited. */
  readonly rateLimit: RateLimits | undefined;
  /** `max_in_flight` of the sink block: overrides sink_concurrency for this sink. */
  readonly maxInFlight: number | undefined;
}

export interface RouteSpec {
  readonly table: string;
  readonly transforms: readonly NamedTransform[];
  readonly sinks: readonly string[];
}

/** The validated, resolved configuration. Read-only after loading. */
export interface Config {
  readonly kafka: KafkaConfig;
  readonly decode: RawConfig['decode'];
  readonly sinks: readonly SinkSpec[];
  readonly routes: readonly RouteSpec[];
  readonly unrouted: RawConfig['unrouted'];
  readonly maxBatchSize: number;
  readonly sinkConcurrency: number;
  readonly retry: RetryConfig;
  readonly dlq: DlqConfig;
  readonly log: RawConfig['log'];
  readonly metrics: MetricsConfig;
  readonly state: RawConfig['state'];
  /** The config file's `views:` and the handlers module's `views`, by name. */
  readonly views: Readonly<Record<string, ViewDefinition>>;
  /** Things that work but are probably not meant (a user kind shadowing a built-in one), each with its path. */
  readonly warnings: readonly ConfigIssue[];
}

function zodIssues(error: z.ZodError, prefix: (string | number)[] = []): ConfigIssue[] {
  return error.issues.map((i) => ({ path: [...prefix, ...i.path].join('.'), message: i.message }));
}

/**
 * Replaces `${NAME}` (and `${NAME:-default}`) in every string with the environment's value, so that
 * secrets stay out of config files. An unset variable without a default is a config error.
 */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, issues: ConfigIssue[], path = ''): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, dflt?: string) => {
      const v = env[name];
      if (v !== undefined) return v;
      if (dflt !== undefined) return dflt;
      issues.push({ path, message: `environment variable ${name} is not set` });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateEnv(v, env, issues, path ? `${path}.${i}` : String(i)));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateEnv(v, env, issues, path ? `${path}.${k}` : k)]),
    );
  }
  return value;
}

export async function readConfigFile(file: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot parse ${file}: ${String(err)}` }], file);
  }
}

async function loadHandlers(spec: string, baseDir: string): Promise<HandlersModule> {
  const path = isAbsolute(spec) ? spec : resolve(baseDir, spec);
  const mod = await importUserModule(path);
  if (!mod.default || typeof mod.default !== 'object') {
    throw new ConfigError([{ path: 'handlers', message: `${path} has no default export (use defineHandlers)` }]);
  }
  return mod.default as HandlersModule;
}

/**
 * Validates a parsed config document. Every problem is collected and reported together, with its
 * path; nothing is half-applied.
 */
export async function resolveConfig(
  document: unknown,
  options: { env?: NodeJS.ProcessEnv; baseDir?: string; source?: string } = {},
): Promise<Config> {
  const issues: ConfigIssue[] = [];
  const interpolated = interpolateEnv(document, options.env ?? process.env, issues);
  const parsed = configSchema.safeParse(interpolated);
  if (!parsed.success) issues.push(...zodIssues(parsed.error));
  if (!parsed.success || issues.length > 0) throw new ConfigError(issues, options.source);
  const raw = parsed.data;

  let handlers: HandlersModule = {};
  if (raw.handlers) handlers = await loadHandlers(raw.handlers, options.baseDir ?? process.cwd());
  const warnings: ConfigIssue[] = [];
  const sinkKinds = withUserKinds<SinkFactory>('sink', builtinSinkKinds, handlers.sinkKinds, warnings);
  const transformKinds = withUserKinds<TransformFactory>('transform', builtinTransformKinds, handlers.transformKinds, warnings);

  const sinks: SinkSpec[] = [];
  for (const [name, block] of Object.entries(raw.sinks)) {
    const factory = sinkKinds[block.kind];
    if (!factory) {
      issues.push({
        path: `sinks.${name}.kind`,
        message: `unknown sink kind "${block.kind}" (known: ${Object.keys(sinkKinds).join(', ')})`,
      });
      continue;
    }
    const { kind: _kind, rate_limit: limit, max_in_flight: maxInFlight, ...rest } = block;
    const result = factory.configSchema.safeParse(rest);
    if (!result.success) issues.push(...zodIssues(result.error, ['sinks', name]));
    else {
      const rateLimit = limit && { recordsPerSecond: limit.records_per_second, requestsPerSecond: limit.requests_per_second, burst: limit.burst };
      sinks.push({ name, kind: block.kind, factory, config: result.data, rateLimit, maxInFlight });
    }
  }

  const routes = new Map<string, { transforms: NamedTransform[]; sinks: string[] }>();
  raw.routes.forEach((route, r) => {
    if (routes.has(route.table)) {
      issues.push({ path: `routes.${r}.table`, message: `table ${route.table} has more than one route` });
      return;
    }
    const transforms: NamedTransform[] = [];
    route.transforms.forEach((t, i) => {
      const factory = transformKinds[t.kind];
      if (!factory) {
        issues.push({
          path: `routes.${r}.transforms.${i}.kind`,
          message: `unknown transform "${t.kind}" (known: ${Object.keys(transformKinds).join(', ')})`,
        });
        return;
      }
      const { kind: _kind, ...rest } = t;
      const result = factory.configSchema.safeParse(rest);
      if (!result.success) {
        issues.push(...zodIssues(result.error, ['routes', r, 'transforms', i]));
        return;
      }
      transforms.push({ name: `${route.table}#${i}:${t.kind}`, apply: (factory.create as (c: unknown) => Transform)(result.data) });
    });
    routes.set(route.table, { transforms, sinks: [...route.sinks] });
  });

  (handlers.handlers ?? []).forEach((h: RouteHandler, i) => {
    const route = routes.get(h.table) ?? { transforms: [], sinks: [] };
    (h.transforms ?? []).forEach((fn, j) =>
      route.transforms.push({ name: `${h.table}#handler${i}.${j}:${fn.name || 'anonymous'}`, apply: fn }),
    );
    for (const s of h.sinks ?? []) if (!route.sinks.includes(s)) route.sinks.push(s);
    if (route.sinks.length === 0) issues.push({ path: `handlers[${i}]`, message: `table ${h.table} has no sinks` });
    routes.set(h.table, route);
  });

  const sinkNames = new Set(Object.keys(raw.sinks));
  raw.routes.forEach((route, r) =>
    route.sinks.forEach((s, i) => {
      if (!sinkNames.has(s)) issues.push({ path: `routes.${r}.sinks.${i}`, message: `no sink named "${s}"` });
    }),
  );
  (handlers.handlers ?? []).forEach((h, i) =>
    (h.sinks ?? []).forEach((s) => {
      if (!sinkNames.has(s)) issues.push({ path: `handlers[${i}].sinks`, message: `no sink named "${s}"` });
    }),
  );

  const views = mergeViews(raw, handlers.views, issues);

  if (issues.length > 0) throw new ConfigError(issues, options.source);
  return deepFreeze({
    kafka: raw.kafka,
    decode: raw.decode,
    sinks,
    routes: [...routes].map(([table, r]) => ({ table, transforms: r.transforms, sinks: r.sinks })),
    unrouted: raw.unrouted,
    maxBatchSize: raw.max_batch_size,
    sinkConcurrency: raw.sink_concurrency,
    retry: raw.retry,
    dlq: raw.dlq,
    log: raw.log,
    metrics: raw.metrics,
    state: raw.state,
    views,
    warnings,
  });
}

/** The config file's views and the handlers module's, each checked as the config schema checks the file's. */
function mergeViews(raw: RawConfig, typed: HandlersModule['views'], issues: ConfigIssue[]): Record<string, ViewDefinition> {
  const views: Record<string, ViewDefinition> = {};
  for (const [name, v] of Object.entries(raw.views)) views[name] = definitionFromConfig(v);
  const entries = Object.entries(typed ?? {});
  for (const [name, view] of entries) {
    const path = `handlers.views.${name}`;
    if (!/^[A-Za-z0-9_]+$/.test(name)) issues.push({ path, message: 'a view name is letters, digits and _' });
    else if (Object.hasOwn(raw.views, name)) issues.push({ path, message: `view ${name} is also defined in the config file (views.${name})` });
    else if (!isTypedView(view)) issues.push({ path, message: 'not a view: build it with fromTable/fromStream(…)…aggregate(…).to(sink, { table })' });
    else {
      for (const message of view.problems) issues.push({ path, message });
      const sink = view.definition.output.sink;
      if (!Object.hasOwn(raw.sinks, sink)) issues.push({ path: `${path}.to.sink`, message: `no sink named "${sink}"` });
      views[name] = view.definition;
    }
  }
  if (entries.length > 0 && !raw.state) issues.push({ path: 'state', message: 'views need a state connection (state.connection_string)' });
  return views;
}

function isTypedView(value: unknown): value is TypedView {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<TypedView>;
  return typeof v.definition === 'object' && v.definition !== null && Array.isArray(v.problems);
}

/** The built-in kinds plus a handlers module's own; a user kind named like a built-in one replaces it, with a warning. */
function withUserKinds<F extends { readonly kind: string }>(
  what: 'sink' | 'transform',
  builtin: Readonly<Record<string, F>>,
  user: Readonly<Record<string, F>> | undefined,
  warnings: ConfigIssue[],
): Readonly<Record<string, F>> {
  for (const kind of Object.keys(user ?? {})) {
    if (Object.hasOwn(builtin, kind)) {
      warnings.push({
        path: `handlers.${what}Kinds.${kind}`,
        message: `${what} kind "${kind}" of the handlers module replaces the built-in one of that name`,
      });
    }
  }
  return { ...builtin, ...user };
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const doc = await readConfigFile(file);
  return resolveConfig(doc, { env, baseDir: dirname(resolve(file)), source: file });
}

function deepFreeze<T>(value: T): T {
  // Plain data only. Schemas and other class instances are shared module state: a zod schema
  // resets its RegExps' lastIndex on every parse, so freezing one broke every later config load.
  if (isPlainData(value) && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function isPlainData(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return Array.isArray(value) || proto === Object.prototype || proto === null;
}
