import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { CdcError, errorMessage } from '../errors.ts';
import type { StatusReport } from './status-report.ts';

/** What the endpoints answer from; the router's metrics implement it. */
export interface HealthEndpoints {
  metrics(): Promise<{ contentType: string; body: string }>;
  alive(): boolean;
  readiness(): { ready: boolean; reasons: readonly string[] };
  status(): StatusReport;
}

export interface MetricsHttpServer {
  readonly host: string;
  /** The bound port (the one the OS chose when the config says 0). */
  readonly port: number;
  readonly url: string;
  /** Idempotent; drops idle keep-alive connections so that it returns at once. */
  close(): Promise<void>;
}

export class MetricsListenError extends CdcError {
  constructor(host: string, port: number, cause: unknown) {
    super(`metrics server cannot listen on ${host}:${port}: ${errorMessage(cause)} (see metrics.host / metrics.port)`, {
      code: 'METRICS_LISTEN_FAILED',
      retriable: false,
      cause,
    });
  }
}

function send(res: ServerResponse, head: boolean, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}

function sendJson(res: ServerResponse, head: boolean, status: number, value: unknown): void {
  send(res, head, status, 'application/json; charset=utf-8', `${JSON.stringify(value)}\n`);
}

/**
 * node:http, no framework: four read-only endpoints. /healthz is liveness (200 until shutdown
 * starts), /readyz readiness (200 once the group is joined and every sink started, else 503 with
 * the reasons), /metrics the Prometheus text format, /status the JSON `cdc-router status` reads.
 */
export async function listenMetricsHttp(
  endpoints: HealthEndpoints,
  options: { host: string; port: number; logger: Logger },
): Promise<MetricsHttpServer> {
  const log = options.logger.child({ component: 'metrics-http' });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      return sendJson(res, false, 405, { error: 'method not allowed' });
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    switch (path) {
      case '/metrics': {
        const { contentType, body } = await endpoints.metrics();
        return send(res, head, 200, contentType, body);
      }
      case '/healthz':
        return endpoints.alive() ? sendJson(res, head, 200, { status: 'ok' }) : sendJson(res, head, 503, { status: 'stopping' });
      case '/readyz': {
        const { ready, reasons } = endpoints.readiness();
        return sendJson(res, head, ready ? 200 : 503, { ready, reasons });
      }
      case '/status':
        return sendJson(res, head, 200, endpoints.status());
      default:
        return sendJson(res, head, 404, { error: 'not found', endpoints: ['/metrics', '/healthz', '/readyz', '/status'] });
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, url: req.url }, 'metrics endpoint failed');
      if (!res.headersSent) sendJson(res, false, 500, { error: errorMessage(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new MetricsListenError(options.host, options.port, err)));
    server.listen(options.port, options.host, () => resolve());
  });
  server.on('error', (err) => log.error({ err }, 'metrics server error'));

  const { port } = server.address() as AddressInfo;
  const hostInUrl = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `http://${hostInUrl}:${port}`;
  log.info({ url }, 'metrics and health endpoints listening');

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    url,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
