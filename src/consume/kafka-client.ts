import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Kafka, logLevel, type LogEntry, type SASLOptions } from 'kafkajs';
import type { Logger } from 'pino';
import type { KafkaConfig } from '../config/schema.ts';

/** kafkajs log lines go into our pino tree, at the matching level. */
function logCreator(logger: Logger) {
  const log = logger.child({ component: 'kafkajs' });
  return () =>
    ({ level, log: entry }: LogEntry) => {
      const { message, ...fields } = entry;
      if (level === logLevel.ERROR) log.error(fields, message);
      else if (level === logLevel.WARN) log.warn(fields, message);
      else if (level === logLevel.INFO) log.debug(fields, message);
      else log.trace(fields, message);
    };
}

function tlsOptions(tls: KafkaConfig['tls']): boolean | ConnectionOptions {
  if (typeof tls === 'boolean') return tls;
  return {
    rejectUnauthorized: tls.reject_unauthorized,
    ...(tls.ca_file ? { ca: [readFileSync(tls.ca_file, 'utf8')] } : {}),
    ...(tls.cert_file ? { cert: readFileSync(tls.cert_file, 'utf8') } : {}),
    ...(tls.key_file ? { key: readFileSync(tls.key_file, 'utf8') } : {}),
  };
}

function saslOptions(sasl: NonNullable<KafkaConfig['sasl']>): SASLOptions {
  const { username, password } = sasl;
  switch (sasl.mechanism) {
    case 'plain':
      return { mechanism: 'plain', username, password };
    case 'scram-sha-256':
      return { mechanism: 'scram-sha-256', username, password };
    case 'scram-sha-512':
      return { mechanism: 'scram-sha-512', username, password };
  }
}

/** The kafkajs client for a config; the only place that knows kafkajs connection options. */
export function createKafka(config: KafkaConfig, logger: Logger, clientIdSuffix = ''): Kafka {
  return new Kafka({
    clientId: config.client_id + clientIdSuffix,
    brokers: config.brokers,
    ssl: tlsOptions(config.tls),
    ...(config.sasl ? { sasl: saslOptions(config.sasl) } : {}),
    connectionTimeout: config.connection_timeout_ms,
    logLevel: logLevel.INFO,
    logCreator: logCreator(logger),
  });
}
