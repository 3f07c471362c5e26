import { pathToFileURL } from 'node:url';

/**
 * Imports a user module (handlers, test files) by path. Under the `cdc-router` command, and under test
 * runners that compile TypeScript, a .ts module imports like any other; in plain Node (a script using
 * the installed package) it goes through tsx, so TypeScript still needs no build step.
 */
export async function importUserModule(path: string): Promise<{ default?: unknown }> {
  const url = pathToFileURL(path).href;
  try {
    return (await import(url)) as { default?: unknown };
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
    const { tsImport } = await import('tsx/esm/api');
    return (await tsImport(url, import.meta.url)) as { default?: unknown };
  }
}
