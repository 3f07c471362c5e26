import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Start order, whatever order CDC_TEST_SERVERS lists them in: Kafka Connect needs the broker (its
 * internal topics) and Debezium needs the source PostgreSQL. Servers not listed here start last.
 */
const ORDER = ['kafka', 'elasticsearch', 'registry', 'source-pg', 'connect', 'influxdb'];

/** Brings up the servers the integration tests need, through the same scripts users run. */
export default function setup(): void {
  const servers = (process.env['CDC_TEST_SERVERS'] ?? 'kafka').split(',').filter(Boolean);
  const rank = (s: string) => (ORDER.includes(s) ? ORDER.indexOf(s) : ORDER.length);
  // Connect cannot start without the broker: list Kafka even when only connect was asked for.
  if (servers.includes('connect') && !servers.includes('kafka')) servers.push('kafka');
  for (const script of [...servers].sort((a, b) => rank(a) - rank(b))) {
    execFileSync('bash', [`scripts/${script}.sh`, 'up'], { cwd: root, stdio: 'inherit' });
  }
}
