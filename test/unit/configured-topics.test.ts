import { describe, expect, it } from 'vitest';
import { configuredTopics } from '../../src/consume/group-admin.ts';

describe('configuredTopics', () => {
  const existing = ['shop.public.orders', 'shop.public.customers', 'other.public.orders', '__consumer_offsets'];
  it('takes the listed topics as they are, existing or not', () => {
    expect(configuredTopics({ topics: ['b', 'a'], topic_pattern: undefined }, existing)).toEqual(['a', 'b']);
  });
  it('resolves a pattern against the topics that exist, sorted', () => {
    expect(configuredTopics({ topics: undefined, topic_pattern: '^shop\\.' }, existing)).toEqual(['shop.public.customers', 'shop.public.orders']);
  });
  it('finds nothing for a pattern no topic matches', () => {
    expect(configuredTopics({ topics: undefined, topic_pattern: '^none$' }, existing)).toEqual([]);
  });
});
