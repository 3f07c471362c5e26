import { readFile } from 'node:fs/promises';

/** A file sink's output, one JSON object a line: none while the file does not exist yet. */
export async function readJsonLines<T>(path: string): Promise<T[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}
