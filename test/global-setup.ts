import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Brings up the servers the integration tests need, through the same scripts users run. */
export default function setup(): void {
  for (const script of (process.env['CDC_TEST_SERVERS'] ?? 'kafka').split(',').filter(Boolean)) {
    execFileSync('bash', [`scripts/${script}.sh`, 'up'], { cwd: root, stdio: 'inherit' });
  }
}
