import { influxdbSink } from '../../connectors/influxdb/influxdb-sink.ts';
import { quoteIdent, quoteLiteral } from '../../connectors/influxdb/client.ts';
import { createLogger } from '../../src/log.ts';
import type { Row } from '../../src/model/change-event.ts';
import { dropDatabase, INFLUX_URL } from '../support/influxdb.ts';
import { uniqueName } from '../support/kafka.ts';
import { describeSinkConformance } from './sink-conformance.ts';

/**
 * The shared suite where it applies to a time series store. The sink writes one point per row here:
 * the key column `id` is the only tag, every other column a field, and the time is the change's
 * commit time (the same for every event of the suite), so each row is one point that later changes
 * overwrite. Read back through /query (JSON answers: the suite's numbers are all below 2^53).
 */

const NO_POSITION_GUARD =
  'InfluxDB has no conditional write: the last write of a point wins, whatever its source position (README: InfluxDB sink, replays)';
const NO_DELETE_WITHOUT_TIME =
  'deleting a point needs its time from a timestamp_column, and the suite\'s rows have none (on_delete: delete_point is covered by test/integration/influxdb-sink.test.ts)';
const NO_TRUNCATE_WATERMARK = 'a truncate drops the series as it finds them (drop_series); InfluxDB keeps no watermark to refuse older points later';

const logger = createLogger({ level: 'error' });

type Series = { name: string; columns: string[]; values: unknown[][] };

async function query(q: string, db: string): Promise<Series[]> {
  const res = await fetch(`${INFLUX_URL}/query?${new URLSearchParams({ q, db, epoch: 'ns' }).toString()}`, { method: 'POST' });
  const body = (await res.json()) as { results?: { series?: Series[]; error?: string }[]; error?: string };
  const error = body.error ?? body.results?.find((r) => r.error)?.error;
  if (res.status !== 200 || error) throw new Error(`${q}: ${res.status} ${error ?? ''}`);
  return body.results?.[0]?.series ?? [];
}

/** What a row reads back as: the key tag is text, nulls are absent (a point has no null fields). */
function project(row: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) if (v !== null && v !== undefined) out[k] = k === 'id' ? String(v) : v;
  return out;
}

describeSinkConformance(
  'influxdb',
  async () => {
    const db = uniqueName('cdc_conf_influx').replace(/-/g, '_');
    const config = influxdbSink.configSchema.parse({ url: INFLUX_URL, database: db, tags: ['id'], truncate: 'drop_series' });
    const sink = influxdbSink.create('influx', config, { logger });
    await sink.start();
    const read = async (table: string, key: Row): Promise<Row | undefined> => {
      const [s] = await query(`SELECT * FROM ${quoteIdent(table)} WHERE "id" = ${quoteLiteral(String(key['id']))}`, db);
      const values = s?.values[0];
      if (!s || !values) return undefined;
      const row: Row = {};
      s.columns.forEach((c, i) => {
        if (c !== 'time' && values[i] !== null) row[c] = values[i];
      });
      return row;
    };
    return {
      sink,
      read,
      async count(table) {
        const [s] = await query(`SELECT COUNT(*) FROM ${quoteIdent(table)}`, db);
        return Math.max(0, ...((s?.values[0] ?? []).slice(1) as number[]));
      },
      async storedText(table, key, column) {
        const v = (await read(table, key))?.[column];
        return typeof v === 'string' ? v : v === undefined ? undefined : JSON.stringify(v);
      },
      project,
      cleanup: () => dropDatabase(db),
    };
  },
  {
    'deletes': NO_DELETE_WITHOUT_TIME,
    'ignores an older position after a newer one, and reports it as success': NO_POSITION_GUARD,
    'keeps a deleted row deleted when an older insert is replayed': NO_DELETE_WITHOUT_TIME,
    'coalesces changes to one key within a batch': `the changes of one point do end as the last one (same time: overwritten), but the test also deletes, and ${NO_DELETE_WITHOUT_TIME}`,
    'keeps unicode, nulls, empty strings and large values': 'InfluxDB 1.x refuses string fields over 64 KB (the test writes 600 KB); unicode, nulls and empty strings are covered by test/integration/influxdb-sink.test.ts',
    'keeps truncated rows out when changes from before the truncate are replayed': NO_TRUNCATE_WATERMARK,
    'keeps out a row older than a truncate that arrives after it, for a key it never held': NO_TRUNCATE_WATERMARK,
    'spares rows newer than a truncate when the truncate is replayed': NO_TRUNCATE_WATERMARK,
  },
);
