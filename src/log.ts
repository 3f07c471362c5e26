import { destination, pino, type Logger, type LoggerOptions } from 'pino';

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

/** The one root logger; created in the composition root and passed down as children. */
export function createLogger(options: { level?: string; pretty?: boolean; destination?: number } = {}): Logger {
  const base: LoggerOptions = {
    name: 'cdc-router',
    level: options.level ?? process.env['LOG_LEVEL'] ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
    // Applied before the redaction.
    formatters: { log: (fields) => describeBinary(fields, 3) as Record<string, unknown> },
  };
  if (options.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { destination: options.destination ?? 2 } } });
  }
  return pino(base, destination({ dest: options.destination ?? 2, sync: false }));
}
