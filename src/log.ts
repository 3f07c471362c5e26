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

/** The one root logger; created in the composition root and passed down as children. */
export function createLogger(options: { level?: string; pretty?: boolean; destination?: number } = {}): Logger {
  const base: LoggerOptions = {
    name: 'cdc-router',
    level: options.level ?? process.env['LOG_LEVEL'] ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  if (options.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { destination: options.destination ?? 2 } } });
  }
  return pino(base, destination({ dest: options.destination ?? 2, sync: false }));
}
