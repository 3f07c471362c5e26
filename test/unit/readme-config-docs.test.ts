import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderConfigDocs } from '../../src/config/docs.ts';

describe('README configuration reference', () => {
  it('matches the sink and transform schemas (regenerate: npx tsx scripts/config-docs.ts --write)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const begin = readme.indexOf('-->', readme.indexOf('<!-- config-docs:begin')) + 3;
    const end = readme.indexOf('<!-- config-docs:end -->');
    expect(readme.slice(begin, end).trim()).toBe(renderConfigDocs().trim());
  });
});
