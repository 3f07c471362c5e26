import { describe, expect, it } from 'vitest';
import { formatDryRun, type DryRunEntry } from '../../src/cli/dry-run-command.ts';
import { UNAVAILABLE } from '../../src/model/change-event.ts';

const at = (offset: number) => ({ topic: 'shop.public.items', partition: 1, offset: String(offset) });

describe('the dry run report', () => {
  it('groups writes by sink in config order, shows bigints and the TOAST marker as JSON, and says where dead letters would go', () => {
    const entries: DryRunEntry[] = [
      { type: 'write', sink: 'cache', op: 'upsert', table: 'public.items', key: { id: 9007199254740993n }, row: { id: 9007199254740993n, notes: UNAVAILABLE }, ...at(0) },
      { type: 'write', sink: 'replica', op: 'truncate', table: 'public.items', ...at(1) },
      { type: 'dead_letter', stage: 'transform', code: 'TRANSFORM_FAILED', message: 'transform mask: boom', table: 'public.items', ...at(2) },
      { type: 'skipped', reason: 'filtered', ...at(3) },
      { type: 'skipped', reason: 'filtered', ...at(4) },
      { type: 'write', sink: 'cache', op: 'delete', table: 'public.items', key: { id: 2 }, ...at(5) },
    ];
    expect(formatDryRun({ sinks: [{ name: 'replica' }, { name: 'cache' }, { name: 'search' }], dlq: { kind: 'none' } }, entries)).toBe(
      [
        'sink replica: 0 upsert(s), 0 delete(s), 1 truncate(s)',
        '  truncate public.items  (shop.public.items/1@1)',
        'sink cache: 1 upsert(s), 1 delete(s), 0 truncate(s)',
        '  upsert public.items key {"id":"9007199254740993"} row {"id":"9007199254740993","notes":{"$unavailable":true}}  (shop.public.items/1@0)',
        '  delete public.items key {"id":2}  (shop.public.items/1@5)',
        'sink search: 0 upsert(s), 0 delete(s), 0 truncate(s)',
        'dead letters: 1 (no dead-letter queue configured: the service would halt the partition at the first)',
        '  TRANSFORM_FAILED (transform) public.items: transform mask: boom  (shop.public.items/1@2)',
        'skipped: 2 (filtered 2)',
        '',
      ].join('\n'),
    );
  });

  it('says so when nothing was read', () => {
    expect(formatDryRun({ sinks: [{ name: 'replica' }], dlq: { kind: 'kafka' } }, [])).toBe(
      'sink replica: 0 upsert(s), 0 delete(s), 0 truncate(s)\ndead letters: 0\nskipped: 0\n',
    );
  });
});
