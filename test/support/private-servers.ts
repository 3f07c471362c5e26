import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './kafka.ts';

/**
 * Private server instances for tests that stop and restart a store: a redis-server process, a
 * PostgreSQL 15 cluster and an Elasticsearch node, each on free ports with its own data under a temp
 * directory (Elasticsearch: under .run/, through scripts/elasticsearch.sh). The machine's shared
 * servers (PostgreSQL 5432, Redis 6379, Elasticsearch 9200, Kafka 9092) are never touched.
 *
 * Everything here is asynchronous: a test that runs the router in-process must not block its event
 * loop (heartbeats, retries) while a server starts.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PG_BIN = process.env['PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
/** The OS user that runs PostgreSQL when the tests run as root (initdb refuses root). */
const PG_OS_USER = process.env['PG_OS_USER'] ?? 'postgres';
const SHARED_PORTS = new Set([5432, 5433, 6379, 8081, 8083, 9092, 9093, 9200, 9300, 9464, 18086, 18088]);

export interface PrivateServer {
  readonly kind: 'redis' | 'postgres' | 'elasticsearch' | 'influxdb';
  readonly port: number;
  /** How a client reaches it: redis://…, postgres://…, http://… */
  readonly url: string;
  /** Whether this helper started it and has not stopped it since. */
  readonly running: boolean;
  /**
   * Stops it the way an outage would: Redis is killed (SIGKILL), PostgreSQL stopped with
   * `pg_ctl stop -m immediate` (no shutdown checkpoint: crash recovery on the next start),
   * Elasticsearch with `scripts/elasticsearch.sh down` (SIGTERM, SIGKILL after 30 s).
   */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data; resolves once it answers requests. */
  start(): Promise<void>;
  /** Stops it and deletes its data. Idempotent; safe after a failed start. */
  destroy(): Promise<void>;
}

interface RunResult {
  readonly code: number | null;
  readonly output: string;
}

/**
 * Runs a command to its exit. Waits for 'exit', not 'close': a server the command daemonizes may
 * keep inherited descriptors open.
 */
async function run(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<RunResult> {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => chunks.push(c));
  child.stderr?.on('data', (c: Buffer) => chunks.push(c));
  const [code] = (await once(child, 'exit')) as [number | null];
  child.stdout?.destroy();
  child.stderr?.destroy();
  return { code, output: Buffer.concat(chunks).toString() };
}

async function runOk(command: string, args: readonly string[], options: SpawnOptions = {}): Promise<string> {
  const { code, output } = await run(command, args, options);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${String(code)}:\n${output.slice(-4000)}`);
  return output;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free loopback port that is none of the shared servers'; with `alsoFree`, port + alsoFree is free too. */
export async function freePort(alsoFree?: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port: p } = server.address() as { port: number };
        server.close(() => resolve(p));
      });
    });
    if (SHARED_PORTS.has(port)) continue;
    if (alsoFree !== undefined) {
      const other = port + alsoFree;
      if (other > 65_535 || SHARED_PORTS.has(other) || !(await portFree(other))) continue;
    }
    return port;
  }
  throw new Error('no free port found');
}

/** Kills left behind when the test process exits without its cleanup (best effort, synchronous). */
const onExit = new Set<() => void>();
process.once('exit', () => {
  for (const kill of onExit) {
    try {
      kill();
    } catch {
      // Already gone.
    }
  }
});

/** Sends PING over a raw socket: true once the server answers +PONG (not while it loads its AOF). */
function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      reply += d.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * A redis-server process with an append-only file synced on every write (`appendfsync always`):
 * what Redis acknowledged survives the SIGKILL of an outage, so a lost row is the router's fault.
 */
export async function startPrivateRedis(): Promise<PrivateServer> {
  const dir = await mkdtemp(join(tmpdir(), 'cdc-redis-'));
  const port = await freePort();
  const conf = join(dir, 'redis.conf');
  await writeFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode no',
      `dir ${dir}`,
      'appendonly yes',
      'appendfsync always',
      'save ""',
      `logfile ${join(dir, 'redis.log')}`,
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  const kill = () => child?.kill('SIGKILL');

  const server: PrivateServer = {
    kind: 'redis',
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    async start() {
      if (child) return;
      const proc = spawn('redis-server', [conf], { stdio: 'ignore' });
      child = proc;
      onExit.add(kill);
      let exited = false;
      proc.once('exit', () => {
        exited = true;
        if (child === proc) child = undefined;
      });
      await waitUntil(
        async () => {
          if (exited) throw new Error(`redis-server exited during start (log: ${join(dir, 'redis.log')})`);
          return redisPing(port);
        },
        30_000,
        `private Redis on port ${port}`,
      );
    },
    async stop() {
      const proc = child;
      if (!proc) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGKILL');
      await exited;
      child = undefined;
      onExit.delete(kill);
    },
    async destroy() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (err) {
    await server.destroy();
    throw err;
  }
  return server;
}

async function osIds(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await runOk('id', ['-u', user])).trim());
  const gid = Number((await runOk('id', ['-g', user])).trim());
  return { uid, gid };
}

/**
 * A PostgreSQL 15 cluster: initdb into a temp directory owned by the postgres user (when running as
 * root, every server command runs through `runuser -u postgres --`), trust authentication, listening
 * on 127.0.0.1 at a free port, its unix socket in that directory. Connect as postgres to database postgres.
 */
export async function startPrivatePostgres(): Promise<PrivateServer> {
  // /tmp/cdc-pg-XXXXXX: short, so that the socket path stays under the ~107-byte limit.
  const dir = await mkdtemp(join(tmpdir(), 'cdc-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'postgres.log');
  const asRoot = process.getuid?.() === 0;
  const pg = (tool: string, args: readonly string[]) =>
    asRoot
      ? runOk('runuser', ['-u', PG_OS_USER, '--', join(PG_BIN, tool), ...args], { cwd: dir })
      : runOk(join(PG_BIN, tool), args, { cwd: dir });
  let port = 0;
  let running = false;
  let initialized = false;
  const postmasterPid = async () => Number((await readFile(join(data, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  let pid: number | undefined;
  const kill = () => {
    if (pid !== undefined) process.kill(pid, 'SIGQUIT');
  };

  const server: PrivateServer = {
    kind: 'postgres',
    get port() {
      return port;
    },
    get url() {
      return `postgres://postgres@127.0.0.1:${port}/postgres`;
    },
    get running() {
      return running;
    },
    async start() {
      if (running) return;
      await pg('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', 'start']);
      running = true;
      pid = await postmasterPid().catch(() => undefined);
      onExit.add(kill);
    },
    async stop() {
      if (!running) return;
      await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
      running = false;
      pid = undefined;
      onExit.delete(kill);
    },
    async destroy() {
      if (running) await server.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    if (asRoot) {
      const { uid, gid } = await osIds(PG_OS_USER);
      await chown(dir, uid, gid);
    }
    await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8', '--no-instructions']);
    initialized = true;
    port = await freePort();
    await appendFile(
      join(data, 'postgresql.conf'),
      [
        '',
        '# private test cluster (test/support/private-servers.ts)',
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        'max_connections = 40',
        "shared_buffers = '32MB'",
        'logging_collector = off',
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        '',
      ].join('\n'),
    );
    await server.start();
  } catch (err) {
    if (initialized) await server.destroy();
    else await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return server;
}

/**
 * A server run by one of the project's scripts on a port of its own (`<PORT_VAR>=<port> scripts/<name>.sh
 * up|down|reset`): stop() is the script's `down`, start() brings it back with its data, destroy() resets
 * it. Killed hard if the test process exits first.
 */
async function startScriptServer(spec: {
  readonly kind: 'elasticsearch' | 'influxdb';
  readonly portVar: string;
  /** A second port the script derives from the first unless set: cleared so that it does. */
  readonly derivedPortVar: string;
  /** How many ports above the first one the server also takes. */
  readonly extraPorts: number;
  readonly pidFile: string;
}): Promise<PrivateServer> {
  const port = await freePort(spec.extraPorts);
  const env: NodeJS.ProcessEnv = { ...process.env, [spec.portVar]: String(port) };
  delete env[spec.derivedPortVar];
  const script = (command: 'up' | 'down' | 'reset') => runOk('bash', [`scripts/${spec.kind}.sh`, command], { cwd: ROOT, env });
  const pidFile = join(process.env['CDC_ROUTER_RUN'] ?? join(ROOT, '.run'), `${spec.kind}-${port}`, spec.pidFile);
  const kill = () => process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');
  onExit.add(kill);
  let running = false;
  const server: PrivateServer = {
    kind: spec.kind,
    port,
    url: `http://127.0.0.1:${port}`,
    get running() {
      return running;
    },
    async start() {
      if (running) return;
      // Marked first: a failed start may still have left a server to stop.
      running = true;
      await script('up');
    },
    async stop() {
      if (!running) return;
      await script('down');
      running = false;
    },
    async destroy() {
      await script('reset');
      running = false;
      onExit.delete(kill);
    },
  };
  try {
    await server.start();
  } catch (err) {
    await server.destroy().catch(() => undefined);
    throw err;
  }
  return server;
}

/**
 * An Elasticsearch node through the project's script: its own HTTP port and transport port (HTTP +
 * 100), state under .run/elasticsearch-<port>, 512 MB heap, about 20 s to start. One per test file.
 */
export function startPrivateElasticsearch(): Promise<PrivateServer> {
  return startScriptServer({ kind: 'elasticsearch', portVar: 'ES_PORT', derivedPortVar: 'ES_TRANSPORT_PORT', extraPorts: 100, pidFile: 'elasticsearch.pid' });
}

/**
 * An InfluxDB 1.x server through the project's script: its own HTTP port and RPC port (HTTP + 2),
 * state under .run/influxdb-<port>; `down` is SIGTERM, SIGKILL after 30 s.
 */
export function startPrivateInfluxdb(): Promise<PrivateServer> {
  return startScriptServer({ kind: 'influxdb', portVar: 'INFLUX_PORT', derivedPortVar: 'INFLUX_RPC_PORT', extraPorts: 2, pidFile: 'influxd.pid' });
}
