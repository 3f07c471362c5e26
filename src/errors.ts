/** Where a Kafka record came from; every error about a record names it. */
export interface RecordCoordinates {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
}

export type ErrorStage = 'decode' | 'route' | 'transform' | 'view' | 'sink' | 'commit' | 'config' | 'dlq';

export interface CdcErrorOptions {
  readonly code: string;
  readonly retriable: boolean;
  readonly cause?: unknown;
  readonly at?: RecordCoordinates;
}

export function describeCoordinates(at: RecordCoordinates | undefined): string {
  return at ? `${at.topic}/${at.partition}@${at.offset}` : '';
}

/**
 * Base of every error cdc-router raises on purpose. `retriable` tells the pipeline whether trying
 * the same thing again can succeed (a server down) or not (a record that can never be written).
 */
export class CdcError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  readonly at: RecordCoordinates | undefined;
  readonly stage: ErrorStage = 'config';

  constructor(message: string, options: CdcErrorOptions) {
    const where = describeCoordinates(options.at);
    super(where ? `${where}: ${message}` : message, { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.retriable = options.retriable;
    this.at = options.at;
  }
}

/** A Kafka record that is not a change event we understand. Never retriable. */
export class DecodeError extends CdcError {
  override readonly stage = 'decode';
  constructor(message: string, options: Omit<CdcErrorOptions, 'retriable'>) {
    super(message, { ...options, retriable: false });
  }
}

export class RouteError extends CdcError {
  override readonly stage = 'route';
  constructor(message: string, options: Omit<CdcErrorOptions, 'retriable'>) {
    super(message, { ...options, retriable: false });
  }
}

/** A transform threw. Transforms are pure, so running them again gives the same result. */
export class TransformError extends CdcError {
  override readonly stage = 'transform';
  readonly transform: string;
  constructor(transform: string, message: string, options: Omit<CdcErrorOptions, 'retriable'>) {
    super(`transform ${transform}: ${message}`, { ...options, retriable: false });
    this.transform = transform;
  }
}

/** A sink failed to write a record or a batch; the sink decides whether it is retriable. */
export class SinkError extends CdcError {
  override readonly stage = 'sink';
  readonly sink: string;
  constructor(sink: string, message: string, options: CdcErrorOptions) {
    super(`sink ${sink}: ${message}`, options);
    this.sink = sink;
  }
}

export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** Configuration is wrong. Carries every problem found, not only the first. */
export class ConfigError extends CdcError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[], source = 'config') {
    const lines = issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n');
    super(`${source} is invalid (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n${lines}`, {
      code: 'CONFIG_INVALID',
      retriable: false,
    });
    this.issues = issues;
  }
}

/**
 * Whether an arbitrary thrown value is worth retrying. Programmer errors (TypeError, RangeError…)
 * never are; unknown errors are not either, so that a bug does not spin forever.
 */
export function isRetriable(err: unknown): boolean {
  return err instanceof CdcError && err.retriable;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
