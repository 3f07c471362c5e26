import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.ts';
import { RouterEvents, createOutcomeTally, type BatchTimings } from '../../src/events.ts';
import { createCommitLatencyTracker } from '../../src/metrics/commit-latency.ts';
import { createRateWindow } from '../../src/metrics/rate-window.ts';
import { createRouterMetrics } from '../../src/metrics/router-metrics.ts';
import { statusReportSchema } from '../../src/metrics/status-report.ts';
import { samples } from '../support/prometheus.ts';

function timings(from: number, count: number, appendMs: number, sourceMs = NaN): BatchTimings {
  return {
    offsets: Array.from({ length: count }, (_, i) => BigInt(from + i)),
    appendMs: new Float64Array(count).fill(appendMs),
    sourceMs: new Float64Array(count).fill(sourceMs),
  };
}

describe('outcome tally', () => {
  it('aggregates by table, op, sink and outcome', () => {
    const t = createOutcomeTally();
    t.add('public.a', 'c', 'out', 'written');
    t.add('public.a', 'c', 'out', 'written');
    t.add('public.b', 'u', 'out', 'written');
    t.add('public.a', 'c', 'out', 'written', 3);
    t.add('', '', '', 'dead_lettered');
    expect(t.list()).toEqual([
      { table: 'public.a', op: 'c', sink: 'out', outcome: 'written', count: 5 },
      { table: 'public.b', op: 'u', sink: 'out', outcome: 'written', count: 1 },
      { table: '', op: '', sink: '', outcome: 'dead_lettered', count: 1 },
    ]);
  });
});

describe('rate window', () => {
  it('is a per-second rate over the last minute, over the uptime while shorter', () => {
    const w = createRateWindow({ startedAt: 0 });
    w.add(10, 500);
    w.add(20, 9_000);
    expect(w.perSecond(10_000)).toBe(3);
    w.add(60, 59_000);
    // At 60 s the first second has left the window, at 70 s the first ten.
    expect(w.perSecond(60_000)).toBeCloseTo(80 / 60);
    expect(w.perSecond(70_000)).toBe(1);
    expect(w.perSecond(200_000)).toBe(0);
  });
});

describe('commit latency tracker', () => {
  it('observes each record once, when a commit covers it, whichever comes first', () => {
    const seen: [string, number, number][] = [];
    const t = createCommitLatencyTracker((topic, a, s) => seen.push([topic, a, s]));
    t.processed('t', 0, timings(0, 3, 1_000, 500), 2_000);
    expect(seen).toEqual([]);
    t.committed('t', 0, 2n, 3_000);
    expect(seen).toEqual([
      ['t', 2, 2.5],
      ['t', 2, 2.5],
    ]);
    // A progress commit before the batch's own event: observed as the event arrives.
    t.committed('t', 0, 5n, 4_000);
    expect(seen).toHaveLength(3);
    t.processed('t', 0, timings(3, 2, 3_000), 4_500);
    expect(seen.slice(3)).toEqual([
      ['t', 1.5, NaN],
      ['t', 1.5, NaN],
    ]);
    expect(t.pendingRecords()).toBe(0);
  });

  it('drops records delivered again, and partitions no longer owned', () => {
    let n = 0;
    const t = createCommitLatencyTracker(() => n++);
    t.processed('t', 0, timings(0, 10, 0));
    t.processed('t', 0, timings(5, 10, 0)); // redelivered from 5
    expect(t.pendingRecords()).toBe(15);
    t.committed('t', 0, 15n);
    expect(n).toBe(15);
    t.processed('t', 1, timings(0, 4, 0));
    t.retain({ t: [0] });
    expect(t.pendingRecords()).toBe(0);
  });

  it('stays bounded', () => {
    const t = createCommitLatencyTracker(() => undefined, 10);
    for (let i = 0; i < 5; i++) t.processed('t', 0, timings(i * 4, 4, 0));
    expect(t.pendingRecords()).toBeLessThanOrEqual(10);
  });
});

describe('router metrics', () => {
  it('turns router events into counters, histograms and gauges, and a status', async () => {
    const events = new RouterEvents();
    let clock = 1_000_000;
    const m = createRouterMetrics({ events, groupId: 'g', sinkNames: ['out', 'pg'], fromBeginning: true, now: () => clock });
    try {
      expect(m.readiness()).toEqual({ ready: false, reasons: ['sinks not started', 'consumer has not joined the group'] });
      m.markSinksStarted();
      events.emit('group.joined', { memberId: 'm-1', assignment: { t: [0, 1] } });
      expect(m.readiness()).toEqual({ ready: true, reasons: [] });
      m.watchPaused(() => [{ topic: 't', partitions: [1] }]);

      events.emit('batch.started', { topic: 't', partition: 0, records: 6 });
      let text = samples(await m.registry.metrics());
      expect(text.get('cdc_router_records_in_flight{topic="t",partition="0"}')).toBe(6);
      events.emit('sink.written', { sink: 'out', records: 3, durationMs: 12 });
      events.emit('sink.retry', { sink: 'pg', attempt: 0, delayMs: 10, error: new Error('connection refused') });
      events.emit('sink.circuit', { sink: 'pg', state: 'open' });
      events.emit('sink.throttled', { sink: 'out', records: 3, waitedMs: 1_500 });
      events.emit('sink.throttled', { sink: 'out', records: 3, waitedMs: 250 });
      events.emit('record.dead-lettered', {
        topic: 't',
        partition: 0,
        offset: '5',
        id: '0-1',
        stage: 'decode',
        sink: undefined,
        error: new DecodeError('bad', { code: 'MALFORMED_JSON' }),
      });
      events.emit('batch.processed', {
        topic: 't',
        partition: 0,
        records: 6,
        changes: 5,
        durationMs: 20,
        outcomes: [
          { table: 'public.a', op: 'c', sink: 'out', outcome: 'written', count: 3 },
          { table: 'public.a', op: 'd', sink: '', outcome: 'filtered', count: 1 },
          { table: '', op: 'tombstone', sink: '', outcome: 'skipped', count: 1 },
          { table: '', op: '', sink: '', outcome: 'dead_lettered', count: 1 },
        ],
        timings: timings(0, 6, clock - 2_000, clock - 3_000),
      });
      events.emit('batch.committed', { topic: 't', partition: 0, offset: '6', durationMs: 4 });
      m.setOffsets([
        { topic: 't', partition: 0, low: 0n, end: 8n, committed: 5n },
        { topic: 't', partition: 1, low: 2n, end: 9n, committed: undefined },
        { topic: 'other', partition: 0, low: 0n, end: 9n, committed: 1n },
      ]);

      text = samples(await m.registry.metrics());
      const get = (k: string) => text.get(k);
      expect(get('cdc_router_records_consumed_total{topic="t",partition="0"}')).toBe(6);
      expect(get('cdc_router_records_processed_total{table="public.a",op="c",sink="out",outcome="written"}')).toBe(3);
      expect(get('cdc_router_records_processed_total{table="public.a",op="d",sink="",outcome="filtered"}')).toBe(1);
      expect(get('cdc_router_records_processed_total{table="",op="tombstone",sink="",outcome="skipped"}')).toBe(1);
      expect(get('cdc_router_records_processed_total{table="",op="",sink="",outcome="dead_lettered"}')).toBe(1);
      expect(get('cdc_router_records_in_flight{topic="t",partition="0"}')).toBe(0);
      expect(get('cdc_router_sink_write_duration_seconds_count{sink="out"}')).toBe(1);
      expect(get('cdc_router_sink_write_duration_seconds_sum{sink="out"}')).toBeCloseTo(0.012);
      expect(get('cdc_router_sink_batch_size_records_bucket{le="5",sink="out"}')).toBe(1);
      expect(get('cdc_router_sink_retries_total{sink="pg"}')).toBe(1);
      expect(get('cdc_router_sink_throttled_seconds_total{sink="out"}')).toBeCloseTo(1.75);
      expect(get('cdc_router_sink_circuit_state{sink="pg"}')).toBe(2);
      expect(get('cdc_router_sink_circuit_state{sink="out"}')).toBe(0);
      expect(get('cdc_router_dlq_entries_total{stage="decode",sink=""}')).toBe(1);
      expect(get('cdc_router_commit_duration_seconds_count{topic="t"}')).toBe(1);
      expect(get('cdc_router_kafka_to_commit_latency_seconds_count{topic="t"}')).toBe(6);
      expect(get('cdc_router_kafka_to_commit_latency_seconds_sum{topic="t"}')).toBeCloseTo(12);
      expect(get('cdc_router_source_to_commit_latency_seconds_sum{topic="t"}')).toBeCloseTo(18);
      // Our commit (6) is newer than the broker's answer (5); partition 1 never committed: from its first offset.
      expect(get('cdc_router_consumer_lag_records{topic="t",partition="0"}')).toBe(2);
      expect(get('cdc_router_consumer_lag_records{topic="t",partition="1"}')).toBe(7);
      expect(get('cdc_router_consumer_lag_records{topic="other",partition="0"}')).toBeUndefined();
      expect(get('cdc_router_paused_partitions{topic="t"}')).toBe(1);
      expect(get('process_cpu_seconds_total')).toBeGreaterThanOrEqual(0);

      clock += 10_000;
      const status = statusReportSchema.parse(m.status());
      expect(status).toMatchObject({
        group: 'g',
        member_id: 'm-1',
        ready: true,
        partitions: [
          { topic: 't', partition: 0, committed: 6, end: 8, lag: 2, paused: false, in_flight: 0 },
          { topic: 't', partition: 1, committed: null, end: 9, lag: 7, paused: true, in_flight: 0 },
        ],
        total_lag: 9,
        paused: [{ topic: 't', partition: 1 }],
        dlq: { entries: 1, by_stage: { decode: 1 } },
      });
      expect(status.sinks).toEqual([
        expect.objectContaining({ name: 'out', health: 'ok', circuit: 'closed', written: 3, retries: 0, throttled_seconds: 1.75 }),
        expect.objectContaining({ name: 'pg', health: 'down', circuit: 'open', retries: 1, last_error: 'connection refused' }),
      ]);
      expect(status.rates.consumed_per_second).toBeCloseTo(0.6);
      expect(status.rates.written_per_second).toBeCloseTo(0.3);

      // A rebalance takes partition 1 away: its series go.
      events.emit('group.joined', { memberId: 'm-1', assignment: { t: [0] } });
      text = samples(await m.registry.metrics());
      expect(text.get('cdc_router_consumer_lag_records{topic="t",partition="1"}')).toBeUndefined();
      // The commit moves the lag at once, without waiting for the next fetch.
      events.emit('batch.committed', { topic: 't', partition: 0, offset: '8', durationMs: 1 });
      text = samples(await m.registry.metrics());
      expect(text.get('cdc_router_consumer_lag_records{topic="t",partition="0"}')).toBe(0);

      m.markStopping();
      expect(m.alive()).toBe(false);
      expect(m.readiness().reasons).toEqual(['stopping']);
    } finally {
      m.close();
    }
  });
});
