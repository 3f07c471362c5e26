import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');

interface LockEntry {
  readonly version?: string;
  readonly dev?: boolean;
  readonly [field: string]: unknown;
}

interface Lockfile {
  readonly packages: Readonly<Record<string, LockEntry>>;
}

interface PackageJson {
  readonly name: string;
  readonly version: string;
  readonly license: string;
  readonly dependencies: Record<string, string>;
  readonly bin: Record<string, string>;
  readonly engines: Record<string, string>;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A throwaway project with the packed cdc-router, TypeScript and @types/node installed. */
export interface PackedProject {
  readonly dir: string;
  readonly tarball: string;
  write(file: string, text: string): Promise<void>;
  /** Runs a command in the project; resolves with its exit code and output (never rejects on exit code). */
  exec(command: string, args: readonly string[]): Promise<CommandResult>;
}

/** `npm pack` of this repository (its `prepack` builds dist/) into `dir`; the tarball's path. */
async function pack(dir: string): Promise<string> {
  await run('npm', ['pack', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  const name = (await readdir(dir)).find((f) => f.endsWith('.tgz'));
  if (!name) throw new Error(`npm pack wrote no tarball into ${dir}`);
  return join(dir, name);
}

/**
 * The lockfile of a project depending on the tarball, TypeScript and @types/node, made from this
 * repository's own lockfile: `npm ci --offline` then installs exactly the versions already in the
 * npm cache (the cache holds tarballs by integrity, not the registry's package documents, so a plain
 * `npm install --offline` of a fresh project cannot resolve versions).
 */
async function lockfileFor(
  tarballSpec: string,
  extra: readonly string[],
  theirDependencies: readonly string[],
): Promise<{ lock: object; dependencies: Record<string, string> }> {
  const repoLock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as Lockfile;
  const me = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
  const wanted = new Set([...extra, ...theirDependencies].map((name) => `node_modules/${name}`));
  const dependencies: Record<string, string> = { [me.name]: tarballSpec };
  const packages: Record<string, unknown> = {};
  for (const [path, entry] of Object.entries(repoLock.packages)) {
    if (path === '' || (entry.dev === true && !wanted.has(path))) continue;
    const { dev: _dev, ...rest } = entry;
    packages[path] = rest;
  }
  for (const name of extra) {
    const version = repoLock.packages[`node_modules/${name}`]?.version;
    if (!version) throw new Error(`${name} is not in package-lock.json`);
    dependencies[name] = version;
  }
  packages[`node_modules/${me.name}`] = {
    version: me.version,
    resolved: tarballSpec,
    license: me.license,
    dependencies: me.dependencies,
    bin: me.bin,
    engines: me.engines,
  };
  packages[''] = { name: 'consumer', dependencies };
  return { lock: { name: 'consumer', lockfileVersion: 3, requires: true, packages }, dependencies };
}

export async function createPackedProject(): Promise<PackedProject> {
  const base = await mkdtemp(join(tmpdir(), 'cdc-router-package-'));
  const tarball = await pack(base);
  const dir = join(base, 'consumer');
  await mkdir(dir);
  const spec = `file:../${tarball.slice(base.length + 1)}`;
  // @types/node needs undici-types, which the repository's lockfile lists as a dev package too.
  const { lock, dependencies } = await lockfileFor(spec, ['typescript', '@types/node'], ['undici-types']);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies }, null, 2));
  await writeFile(join(dir, 'package-lock.json'), JSON.stringify(lock, null, 2));

  const exec = async (command: string, args: readonly string[]): Promise<CommandResult> => {
    try {
      const { stdout, stderr } = await run(command, args, { cwd: dir, maxBuffer: 16 * 1024 * 1024 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof e.code !== 'number') throw err;
      return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };
  const installed = await exec('npm', ['ci', '--offline', '--no-audit', '--no-fund']);
  if (installed.code !== 0) throw new Error(`npm ci --offline failed in ${dir}:\n${installed.stderr}`);
  return {
    dir,
    tarball,
    write: async (file, text) => writeFile(join(dir, file), text),
    exec,
  };
}
