import { readFile } from 'node:fs/promises';
import { Client, type ClientOptions } from '@elastic/elasticsearch';
import type { Logger } from 'pino';
import { SinkError } from '../../src/errors.ts';
import { failureError } from '../failure.ts';
import { classify } from './classify.ts';
import type { ElasticsearchSinkConfig } from './config.ts';

function redactUrl(node: string): string {
  const url = new URL(node);
  url.username = '';
  url.password = '';
  return url.origin;
}

/** A client for the configured nodes, once the cluster has answered. */
export async function connect(sink: string, config: ElasticsearchSinkConfig, log: Logger): Promise<Client> {
  let ca: Buffer | undefined;
  if (config.tls?.ca_file) {
    try {
      ca = await readFile(config.tls.ca_file);
    } catch (err) {
      throw new SinkError(sink, `cannot read tls.ca_file ${config.tls.ca_file}: ${String(err)}`, { code: 'CONFIG_TLS', retriable: false, cause: err });
    }
  }
  const auth: ClientOptions['auth'] = !config.auth
    ? undefined
    : 'api_key' in config.auth
      ? { apiKey: config.auth.api_key }
      : { username: config.auth.username, password: config.auth.password };
  const es = new Client({
    nodes: config.nodes,
    ...(auth ? { auth } : {}),
    ...(config.tls ? { tls: { ...(ca ? { ca } : {}), rejectUnauthorized: config.tls.reject_unauthorized } } : {}),
    requestTimeout: config.request_timeout_ms,
    maxRetries: config.max_retries,
    compression: config.compression,
  });
  try {
    // GET / may be disabled (and answers 405 on minimal distributions): cluster health always answers.
    const health = await es.cluster.health({ timeout: '5s' });
    log.info({ nodes: config.nodes.map(redactUrl), cluster: health.cluster_name, status: health.status }, 'elasticsearch sink connected');
  } catch (err) {
    await es.close().catch(() => undefined);
    throw failureError(sink, 'cannot reach Elasticsearch', classify(err), err);
  }
  return es;
}
