import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/load.ts';
import type { RouterEvents } from '../events.ts';
import { listenMetricsHttp } from './http-server.ts';
import { startLagMonitor, type LagAdmin } from './lag-monitor.ts';
import { createRouterMetrics, type PausedSource } from './router-metrics.ts';

/** The running metrics and health endpoints of one router process. */
export interface MetricsServer {
  readonly registry: Registry;
  readonly host: string;
  /** The bound port: with `metrics.port: 0` the one the OS chose. */
  readonly port: number;
  readonly url: string;
  /** Every sink started (one of the two conditions of /readyz). */
  markSinksStarted(): void;
  /** Paused partitions are read from the consumer at each scrape and /status. */
  watchConsumer(consumer: { paused: PausedSource }): void;
  /** /healthz and /readyz answer 503 from now on. */
  markStopping(): void;
  /** Stops the lag monitor and the HTTP server. Idempotent. */
  close(): Promise<void>;
}

/**
 * Started first by the service, so that /healthz and /readyz answer (503, saying why) while the
 * sinks start and the group is joined, and closed last.
 */
export async function startMetrics(
  config: Config,
  deps: { events: RouterEvents; logger: Logger; connectAdmin?: (c: Config['kafka'], l: Logger) => Promise<LagAdmin> },
): Promise<MetricsServer> {
  const { events, logger } = deps;
  const metrics = createRouterMetrics({
    events,
    groupId: config.kafka.group_id,
    sinkNames: config.sinks.map((s) => s.name),
    fromBeginning: config.kafka.from_beginning,
  });
  let http;
  try {
    http = await listenMetricsHttp(
      {
        metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
        alive: metrics.alive,
        readiness: metrics.readiness,
        status: metrics.status,
      },
      { host: config.metrics.host, port: config.metrics.port, logger },
    );
  } catch (err) {
    metrics.close();
    throw err;
  }
  const lag = startLagMonitor({
    kafka: config.kafka,
    intervalMs: config.metrics.lag_interval_ms,
    logger,
    partitions: metrics.assignment,
    onOffsets: metrics.setOffsets,
    ...(deps.connectAdmin ? { connect: deps.connectAdmin } : {}),
  });
  const offJoined = events.on('group.joined', () => lag.refresh());

  let closing: Promise<void> | undefined;
  return {
    registry: metrics.registry,
    host: http.host,
    port: http.port,
    url: http.url,
    markSinksStarted: metrics.markSinksStarted,
    watchConsumer: (consumer) => metrics.watchPaused(() => consumer.paused()),
    markStopping: metrics.markStopping,
    close: () =>
      (closing ??= (async () => {
        metrics.markStopping();
        offJoined();
        await lag.close();
        await http.close();
        metrics.close();
      })()),
  };
}
