import { isatty } from 'node:tty';
import { destination, pino, type Logger, type LoggerOptions } from 'pino';
import type { LogFormat } from './config/schema.ts';

export type { Logger } from 'pino';

/** Paths never written to logs, wherever they appear in a logged object. */
const REDACT = [
  '*.password',
  '*.*.password',
  '*.*.*.password',
  '*.sasl',
  '*.*.sasl',
  '*.apiKey',
  '*.*.apiKey',
  '*.*.*.apiKey',
  '*.token',
  '*.*.token',
];

/**
 * Binary values (Buffers, typed arrays) of a logged object, up to three levels down, become a short
 * description. The redaction walks logged objects through its wildcards and throws on a Buffer one
 * or two levels down (@pinojs/redact copies it into a plain object whose getters then fail), which
 * made the log call itself throw into its caller: kafkajs's debug lines carry Buffers (a SyncGroup
 * response's assignment), and one such line crashed the consumer. Raw bytes do not belong in logs
 * anyway. Plain objects and arrays are copied only where something is replaced.
 */
function describeBinary(value: unknown, depth: number): unknown {
  if (ArrayBuffer.isView(value)) return `[${value.constructor.name}: ${value.byteLength} bytes]`;
  if (depth === 0 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((v: unknown, i) => {
      const d = describeBinary(v, depth - 1);
      if (d !== v) (copy ??= [...value])[i] = d;
    });
    return copy ?? value;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  // Errors and other class instances keep their type (pino serializes errors itself).
  if (proto !== Object.prototype && proto !== null) return value;
  let copy: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const d = describeBinary(v, depth - 1);
    if (d !== v) (copy ??= { ...value })[k] = d;
  }
  return copy ?? value;
}

/**
 * Whether log lines are written for people (pino-pretty) rather than as JSON lines: `auto` does so
 * only when the log's own destination is a terminal. That is stderr, not stdout: `run 2>log.json`
 * on a terminal keeps the file JSON, and `offsets show --json | jq` keeps stdout clean either way.
 */
export function prettyLogs(format: LogFormat, destinationIsTty: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && destinationIsTty);
}

/** The one root logger; created in the composition root and passed down as children. */
export function createLogger(options: { level?: string; format?: LogFormat; destination?: number } = {}): Logger {
  const base: LoggerOptions = {
    name: 'cdc-router',
    level: options.level ?? process.env['LOG_LEVEL'] ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
    // Applied before the redaction.
    formatters: { log: (fields) => describeBinary(fields, 3) as Record<string, unknown> },
  };
  const fd = options.destination ?? 2;
  if (prettyLogs(options.format ?? 'auto', isatty(fd))) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { destination: fd } } });
  }
  return pino(base, destination({ dest: fd, sync: false }));
}
