import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { createDeadLetterQueue } from '../../src/dlq/create-dead-letter-queue.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { startService } from '../../src/service.ts';
import { envelope } from '../../src/testing/envelope.ts';
import { dropDatabase, INFLUX_URL, selectPoints } from '../support/influxdb.ts';
import { BROKER, kafkaFixture, uniqueName, waitUntil, type KafkaFixture } from '../support/kafka.ts';

/**
 * Records InfluxDB refuses for good reach the dead-letter queue alone, with InfluxDB's message and
 * their line: a field type conflict inside a batch of good points (the batch is bisected; the good
 * points are written) and a time too fine for the sink's precision (refused before any request).
 */

const logger = createLogger({ level: 'error' });

describe('InfluxDB sink: refused records are dead-lettered with the line and InfluxDB\'s message', () => {
  let kafka: KafkaFixture;
  const prefix = uniqueName('influx-dlq');
  const database = prefix.replace(/-/g, '_');
  const dlqTopic = `${prefix}.dlq`;

  beforeAll(async () => {
    kafka = await kafkaFixture();
  });
  afterAll(async () => {
    await kafka.admin.deleteTopics({ topics: [dlqTopic] }).catch(() => undefined);
    await kafka.close();
    await dropDatabase(database).catch(() => undefined);
  });

  it('dead-letters exactly the refused records, writes the rest, commits to the end', async () => {
    const topic = `${prefix}.public.metrics`;
    await kafka.createTopic(topic, 1);
    const rows = [
      { host: 'a', ts: 1_000, value: 1.5 },
      { host: 'b', ts: 2_000, value: 2.5 },
      { host: 'c', ts: 3_000, value: 'not a number' },
      { host: 'd', ts: 4_000, value: 4.5 },
      { host: 'e', ts: '2024-01-01T00:00:00.123456Z', value: 5.5 },
      { host: 'f', ts: 6_000, value: 6.5 },
    ];
    // One send: the router reads them as one batch.
    await kafka.producer.send({
      topic,
      messages: rows.map((after, i) => envelope({ op: 'c', table: 'metrics', key: { host: after.host }, after, lsn: 100 + i * 8, prefix })),
    });
    const group = uniqueName('influx-dlq-group');
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: { tsdb: { kind: 'influxdb', url: INFLUX_URL, database, precision: 'ms', timestamp_column: 'ts', tags: ['host'] } },
      routes: [{ table: 'public.metrics', sinks: ['tsdb'] }],
      retry: { initial_ms: 50, max_ms: 500 },
      dlq: { kind: 'kafka', topic: dlqTopic },
      metrics: { enabled: false },
    });
    const events = new RouterEvents();
    const lettered: string[] = [];
    events.on('record.dead-lettered', (d) => lettered.push(d.offset));
    const service = await startService(config, { logger, events });
    try {
      await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === 6n, 60_000, 'the commit to reach the end');
    } finally {
      await service.stop();
    }
    expect(lettered.sort()).toEqual(['2', '4']);
    const points = await selectPoints('SELECT * FROM metrics', database);
    expect(points.map((p) => p.values['host'])).toEqual(['a', 'b', 'd', 'f']);

    const dlq = createDeadLetterQueue(config, logger)!;
    await dlq.start();
    try {
      const entries = await dlq.list({ status: 'all' });
      const byOffset = new Map(entries.map((e) => [e.context.offset, e.context]));
      expect(byOffset.get('2')).toMatchObject({ stage: 'sink', sink: 'tsdb', table: 'public.metrics', errorCode: 'INFLUX_FIELD_TYPE_CONFLICT' });
      expect(byOffset.get('2')?.errorMessage).toMatch(
        /partial write: field type conflict: input field "value" on measurement "metrics" is type string, already exists as type float dropped=1 \(line: metrics,host=c value="not a number" 3000\)/,
      );
      expect(byOffset.get('4')).toMatchObject({ stage: 'sink', sink: 'tsdb', errorCode: 'INFLUX_UNREPRESENTABLE' });
      expect(byOffset.get('4')?.errorMessage).toMatch(/below the sink's precision ms/);
      expect(entries).toHaveLength(2);
    } finally {
      await dlq.close();
    }
  });
});
