import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.ts';
import { RouterEvents } from '../../src/events.ts';
import { createLogger } from '../../src/log.ts';
import { startService, type Service } from '../../src/service.ts';
import { createSourceDatabase, ensureCdcServers, registerConnector, uniqueSourceName, type DebeziumConnector, type SourceDatabase } from '../support/debezium-source.ts';
import { dropDatabase, INFLUX_URL, selectPoints } from '../support/influxdb.ts';
import { BROKER, kafkaFixture, waitUntil, type KafkaFixture } from '../support/kafka.ts';

/**
 * Real CDC into InfluxDB: a metrics-like table on the source PostgreSQL, captured by Debezium
 * (snapshot, then inserts, updates and deletes), routed by cdc-router to the InfluxDB sink. The
 * points in InfluxDB must equal the series computed from the source by SQL, row by row: tags host
 * and region, time = ts (µs), fields cpu (float), requests (int64, exact), price (decimal as text),
 * healthy (boolean).
 */

const TABLE_SQL = `
  CREATE TABLE metrics (
    host text NOT NULL,
    ts timestamp(6) NOT NULL,
    region text,
    cpu double precision,
    requests bigint,
    price numeric(24, 4),
    healthy boolean,
    PRIMARY KEY (host, ts)
  );
  ALTER TABLE metrics REPLICA IDENTITY FULL;`;

/** The expected series, from the source: one line per row, every value as text. */
const EXPECTED_SQL = `
  SELECT host, coalesce(region, '') AS region,
         ((extract(epoch FROM ts) * 1000000)::bigint * 1000)::text AS time,
         cpu, requests::text AS requests, price::text AS price, healthy
  FROM metrics ORDER BY host, ts`;

interface Line {
  readonly key: string;
  readonly region: string;
  readonly cpu: number | null;
  readonly requests: string | null;
  readonly price: string | null;
  readonly healthy: boolean | null;
}

describe('real CDC end to end: Debezium PostgreSQL → cdc-router → InfluxDB', () => {
  let kafka: KafkaFixture;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    await ensureCdcServers();
    kafka = await kafkaFixture();
  });
  afterAll(async () => {
    for (let c = cleanups.pop(); c; c = cleanups.pop()) await c().catch((err: unknown) => console.warn('cleanup failed', err));
    await kafka?.close();
  });

  it('the points in InfluxDB equal the series computed from the source', async () => {
    const id = uniqueSourceName('e2e_influx');
    const db: SourceDatabase = await createSourceDatabase(id);
    cleanups.push(() => db.drop());
    await db.client.query(TABLE_SQL);
    // Snapshot rows: hostile host names, int64 at its limits, a µs timestamp, nulls.
    await db.client.query(`
      INSERT INTO metrics VALUES
        ('db-1', '2024-03-01 10:00:00.000001', 'eu west', 0.25, 9223372036854775807, 12345678901234567890.1234, true),
        ('web 2,a=b "x"', '2024-03-01 10:00:00.5', 'us', 1e-7, -9223372036854775808, 0.0001, false),
        ('db-1', '2024-03-01 10:00:01', NULL, NULL, 0, NULL, NULL)`);

    const topic = `${id}.public.metrics`;
    await kafka.createTopic(topic, 1);
    const connector: DebeziumConnector = await registerConnector({ name: id, database: id, tables: ['public.metrics'] });
    cleanups.push(() => connector.drop());
    cleanups.push(async () => {
      await kafka.admin.deleteTopics({ topics: [`__debezium-heartbeat.${id}`, `${id}.transaction`] }).catch(() => undefined);
    });
    const database = id;
    cleanups.push(() => dropDatabase(database));

    const group = `${id}-router`;
    const config = await resolveConfig({
      kafka: { brokers: [BROKER], group_id: group, topics: [topic] },
      sinks: { tsdb: { kind: 'influxdb', url: INFLUX_URL, database, precision: 'us', timestamp_column: 'ts', on_delete: 'delete_point' } },
      routes: [{ table: 'public.metrics', sinks: ['tsdb'] }],
      retry: { initial_ms: 100, max_ms: 2_000 },
      metrics: { enabled: false },
    });
    const events = new RouterEvents();
    const failures: string[] = [];
    events.on('record.failed', (f) => failures.push(`${f.offset}: ${f.error.message}`));
    events.on('partition.halted', (h) => failures.push(`halted ${h.offset}: ${h.error.message}`));
    const service: Service = await startService(config, { logger: createLogger({ level: 'error' }), events });
    cleanups.push(() => service.stop());

    // Streaming: inserts, updates of fields (several times the same point), and a delete.
    for (let i = 0; i < 30; i++) {
      await db.client.query(
        `INSERT INTO metrics VALUES ($1, timestamp '2024-03-01 11:00:00' + $2 * interval '1.000001 second', $3, $4, $5, $6, $7)`,
        [`host-${i % 4}`, i, i % 2 ? 'eu' : 'us', i / 3, String(2n ** 53n + BigInt(i)), `${i}.${i % 10}`, i % 3 === 0],
      );
    }
    await db.client.query(`UPDATE metrics SET cpu = cpu + 100, requests = requests * 2 WHERE host = 'host-1'`);
    await db.client.query(`UPDATE metrics SET cpu = 0.5, price = 99.9999, healthy = NOT healthy WHERE host = 'db-1' AND region IS NOT NULL`);
    await db.client.query(`UPDATE metrics SET requests = 7 WHERE host = 'host-1'`);
    await db.client.query(`DELETE FROM metrics WHERE host = 'host-2' AND ts < '2024-03-01 11:00:10'`);

    const source = await db.client.query<{ host: string; region: string; time: string; cpu: number | null; requests: string | null; price: string | null; healthy: boolean | null }>(EXPECTED_SQL);
    const expected: Line[] = source.rows.map((r) => ({ key: `${r.host}|${r.time}`, region: r.region, cpu: r.cpu, requests: r.requests, price: r.price, healthy: r.healthy }));
    expect(expected.length).toBe(31); // 3 snapshot rows + 30 inserts - 2 deleted

    const stored = async (): Promise<Line[]> => {
      const points = await selectPoints('SELECT * FROM metrics', database).catch(() => []);
      return points
        .map((p) => ({
          key: `${p.values['host']}|${p.time}`,
          region: p.values['region'] ?? '',
          cpu: p.values['cpu'] === undefined ? null : Number(p.values['cpu']),
          requests: p.values['requests'] ?? null,
          price: p.values['price'] ?? null,
          healthy: p.values['healthy'] === undefined ? null : p.values['healthy'] === 'true',
        }))
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    };
    const want = [...expected].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let last: Line[] = [];
    await waitUntil(
      async () => {
        if (failures.length > 0) throw new Error(failures.join('\n'));
        last = await stored();
        return JSON.stringify(last) === JSON.stringify(want);
      },
      120_000,
      'InfluxDB to hold the source series',
    ).catch((err: unknown) => {
      expect(last, String(err)).toEqual(want);
    });
    expect(last).toEqual(want);
    // And the router committed everything Debezium wrote.
    const end = (await kafka.endOffsets(topic)).get(0)!;
    await waitUntil(async () => (await kafka.committed(group, topic)).get(0) === end, 30_000, 'the commit to reach the end offset');
    expect(failures).toEqual([]);
  }, 240_000);
});
