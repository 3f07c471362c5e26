import type { Logger } from 'pino';
import type { KafkaConfig } from '../config/schema.ts';
import { connectGroupAdmin, type GroupAdmin } from '../consume/group-admin.ts';
import type { PartitionOffsets } from './router-metrics.ts';

export type LagAdmin = Pick<GroupAdmin, 'bounds' | 'committed' | 'close'>;

export interface LagMonitorOptions {
  readonly kafka: KafkaConfig;
  readonly intervalMs: number;
  readonly logger: Logger;
  /** The partitions to measure (this member's), by topic. */
  readonly partitions: () => Readonly<Record<string, readonly number[]>>;
  readonly onOffsets: (offsets: PartitionOffsets[]) => void;
  /** How the admin client is made; tests pass a fake. */
  readonly connect?: (config: KafkaConfig, logger: Logger) => Promise<LagAdmin>;
}

export interface LagMonitor {
  /** Fetches now (e.g. after a rebalance), then every interval again. */
  refresh(): void;
  /** Idempotent. Does not wait for a fetch under way: a broker away must not hold up shutdown. */
  close(): Promise<void>;
}

/**
 * Lag without a per-record cost: every `intervalMs`, one admin client asks the brokers for the end
 * offsets and the group's committed offsets of the owned partitions. Fetches never overlap; a failed
 * one is logged once (until one succeeds again) and retried at the next interval.
 */
export function startLagMonitor(options: LagMonitorOptions): LagMonitor {
  const log = options.logger.child({ component: 'lag-monitor' });
  const connect = options.connect ?? connectGroupAdmin;
  let admin: LagAdmin | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  let closed = false;
  let failing = false;
  let closing: Promise<void> | undefined;

  function schedule(): void {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(run, options.intervalMs);
    timer.unref();
  }

  function run(): void {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    void fetchOnce().finally(() => {
      running = false;
      if (again) {
        again = false;
        run();
      } else schedule();
    });
  }

  async function fetchOnce(): Promise<void> {
    const wanted = options.partitions();
    const topics = Object.keys(wanted).filter((t) => (wanted[t]?.length ?? 0) > 0);
    if (topics.length === 0) return;
    try {
      if (!admin) {
        const connected = await connect(options.kafka, options.logger);
        if (closed) {
          await connected.close();
          return;
        }
        admin = connected;
      }
      const a = admin;
      const found: PartitionOffsets[] = [];
      await Promise.all(
        topics.map(async (topic) => {
          const [bounds, committed] = await Promise.all([a.bounds(topic), a.committed(options.kafka.group_id, topic)]);
          const owned = wanted[topic] ?? [];
          for (const b of bounds) {
            if (!owned.includes(b.partition)) continue;
            found.push({ topic, partition: b.partition, low: b.low, end: b.high, committed: committed.get(b.partition) });
          }
        }),
      );
      if (closed) return;
      options.onOffsets(found);
      if (failing) log.info('offsets for the lag gauge fetched again');
      failing = false;
    } catch (err) {
      if (closed) return;
      if (!failing) log.warn({ err }, 'cannot fetch offsets for the lag gauge; retrying every interval');
      failing = true;
    }
  }

  schedule();
  return {
    refresh: run,
    close: () =>
      (closing ??= (async () => {
        closed = true;
        clearTimeout(timer);
        await admin?.close().catch((err: unknown) => log.warn({ err }, 'lag monitor admin close failed'));
      })()),
  };
}
