import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSourceDatabase,
  ensureCdcServers,
  readTopics,
  registerConnector,
  uniqueSourceName,
  type DebeziumConnector,
  type SourceDatabase,
} from '../support/debezium-source.ts';
import { BROKER, kafkaFixture, type KafkaFixture } from '../support/kafka.ts';
import { routerChildren } from '../support/router-children.ts';
import { openStores, ES_URL, PG_URL, REDIS_URL, type Stores } from '../support/stores.ts';

/**
 * Real CDC end to end: a workload on a private source database, captured by a real Debezium
 * PostgreSQL connector (Kafka Connect), routed by a cdc-router process into PostgreSQL, Redis and
 * Elasticsearch. No hand-made events. Afterwards every target must equal the source:
 *
 * - PostgreSQL: each source table and its target table are dumped with one text expression per
 *   column, ordered by key, on both servers, and compared row by row. Both sessions run with
 *   TimeZone UTC and DateStyle ISO. Where the target type legitimately differs from the source type
 *   (the sink creates columns from Debezium's schema), the source side is normalised in SQL to what
 *   Debezium carries; every such column says why (`why`). No column is left out, and the target's
 *   column types are checked too.
 * - Redis (json mode) and Elasticsearch: every row's value / document equals the row's expected
 *   projection, computed from the source in SQL (`json`): what the decoder makes of Debezium's
 *   encoding (decimals as exact strings, temporal values as ISO-8601 text with the type's fraction
 *   digits, bytea as base64, integers beyond 2^53 as decimal strings…), keyed by the Redis key and
 *   the document id the sinks derive from the row key.
 * - Deleted rows are absent everywhere and the truncated table is empty (`truncate: apply`): both
 *   follow from the exact comparisons (no extra key in any target).
 *
 * Not covered, because Debezium has no faithful encoding for them (seen with 3.7.0): ±infinity
 * dates and timestamps (mapped to far-away instants, or Long.MIN_VALUE), BC dates (0001-01-01 BC
 * arrives as 0001-01-01), NaN/±Infinity floats (sent as strings, which Elasticsearch refuses for a
 * numeric field). Known router gap, reported and not hidden: json/jsonb values are parsed with
 * JavaScript numbers, so an integer beyond 2^53 inside a JSON document is rounded and a
 * non-canonical number (1.10) is rewritten (1.1); the JSON documents below use canonical numbers
 * within 2^53 only.
 */


/** Debezium's interval encoding (MicroDuration): months count 365.25/12 = 30.4375 days. */
const DEBEZIUM_INTERVAL_MICROS = (c: string) =>
  `((extract(year from ${c}) * 12 + extract(month from ${c})) * 2629800000000 + extract(day from ${c}) * 86400000000 ` +
  `+ (extract(hour from ${c}) * 3600 + extract(minute from ${c}) * 60 + extract(second from ${c})) * 1000000)::bigint`;
/** An int64 as the router's JSON sinks write it: a number within 2^53, else a decimal string. */
const JSON_INT64 = (c: string) =>
  `CASE WHEN ${c} BETWEEN -9007199254740991 AND 9007199254740991 THEN to_jsonb(${c}) ELSE to_jsonb(${c}::text) END`;

interface ColumnSpec {
  readonly name: string;
  /** Source column type. */
  readonly type: string;
  /** The type the PostgreSQL sink creates for it (format_type). */
  readonly target: string;
  /** Source expression whose text the target column's text must equal (default: the column as text). */
  readonly source?: (c: string) => string;
  /** Source expression of the JSON value Redis and Elasticsearch must hold (default: to_jsonb(column)). */
  readonly json?: (c: string) => string;
  /** Why the target differs from the source, for columns with a normalisation. */
  readonly why?: string;
}

interface TableSpec {
  readonly name: string;
  readonly columns: readonly ColumnSpec[];
  readonly key: readonly string[];
  /** ORDER BY on both servers (text keys in "C" collation: the two clusters' defaults differ). */
  readonly orderBy: string;
  readonly identity: 'default' | 'full';
}

const col = (name: string, type: string, target: string, extra: Partial<ColumnSpec> = {}): ColumnSpec => ({ name, type, target, ...extra });
const asText = (c: string) => `to_jsonb(${c}::text)`;

const ALL_TYPES: TableSpec = {
  name: 'all_types',
  key: ['id'],
  orderBy: 'id',
  identity: 'default',
  columns: [
    col('id', 'bigint', 'bigint'),
    col('n_fixed', 'numeric(12,3)', 'numeric', { json: asText }),
    col('n_free', 'numeric', 'numeric', {
      source: (c) => `trim_scale(${c})::text`,
      json: (c) => `to_jsonb(trim_scale(${c})::text)`,
      why: 'an unconstrained numeric is a VariableScaleDecimal, which Debezium sends without trailing zeros (30.00 as 30)',
    }),
    col('m_money', 'money', 'numeric', {
      source: (c) => `${c}::numeric::text`,
      json: (c) => `to_jsonb(${c}::numeric::text)`,
      why: 'money travels as a Decimal of scale money.fraction.digits (2): a numeric in the target',
    }),
    col('i2', 'smallint', 'smallint'),
    col('i4', 'integer', 'integer'),
    col('i8', 'bigint', 'bigint', { json: JSON_INT64 }),
    col('f4', 'real', 'real'),
    col('f8', 'double precision', 'double precision'),
    col('flag', 'boolean', 'boolean'),
    col('t_text', 'text', 'text'),
    col('vc', 'varchar(40)', 'text', { why: 'a Connect string has no length: text' }),
    col('bin', 'bytea', 'bytea', { json: (c) => `to_jsonb(translate(encode(${c}, 'base64'), E'\\n', ''))` }),
    col('d', 'date', 'date', { json: asText }),
    col('tm', 'time', 'time without time zone', { json: (c) => `to_jsonb(to_char('2000-01-01'::date + ${c}, 'HH24:MI:SS.US'))` }),
    col('ts', 'timestamp', 'timestamp without time zone', { json: (c) => `to_jsonb(to_char(${c}, 'YYYY-MM-DD"T"HH24:MI:SS.US'))` }),
    col('tstz', 'timestamptz', 'timestamp with time zone', {
      json: (c) => `to_jsonb(to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))`,
    }),
    col('iv', 'interval', 'bigint', {
      source: (c) => `${DEBEZIUM_INTERVAL_MICROS(c)}::text`,
      json: (c) => `to_jsonb(${DEBEZIUM_INTERVAL_MICROS(c)})`,
      why:
        'interval.handling.mode=numeric (the default): MicroDuration, microseconds with a month of 30.4375 days; ' +
        'the target holds that bigint, the source interval is converted by the same rule',
    }),
    col('u', 'uuid', 'uuid'),
    col('j', 'json', 'jsonb', {
      source: (c) => `${c}::jsonb::text`,
      why: 'io.debezium.data.Json becomes jsonb: whitespace and key order normalised, as ::jsonb does',
    }),
    col('jb', 'jsonb', 'jsonb', { json: (c) => c }),
    col('a_int', 'integer[]', 'integer[]'),
    // An array with an element beyond 2^53 is written as decimal strings throughout.
    col('a_bigint', 'bigint[]', 'bigint[]', {
      json: (c) =>
        `CASE WHEN EXISTS (SELECT FROM unnest(${c}) AS e WHERE e NOT BETWEEN -9007199254740991 AND 9007199254740991) ` +
        `THEN to_jsonb(${c}::text[]) ELSE to_jsonb(${c}) END`,
    }),
    col('a_text', 'text[]', 'text[]'),
    col('mood', 'mood', 'text', {
      source: (c) => `${c}::text`,
      json: asText,
      why: 'io.debezium.data.Enum is a string: text in the target',
    }),
  ],
};

const TABLES: readonly TableSpec[] = [
  ALL_TYPES,
  {
    // Already filled when the connector starts: its first rows arrive as snapshot reads (op r).
    name: 'snap_items',
    key: ['id'],
    orderBy: 'id',
    identity: 'default',
    columns: [
      col('id', 'integer', 'integer'),
      col('label', 'text NOT NULL', 'text'),
      col('qty', 'integer', 'integer'),
      col('price', 'numeric(10,2)', 'numeric', { json: asText }),
    ],
  },
  {
    // REPLICA IDENTITY DEFAULT and a TOASTed body: updates that leave the body alone carry
    // Debezium's unavailable-value placeholder, and every target must keep the stored body.
    name: 'docs',
    key: ['id'],
    orderBy: 'id',
    identity: 'default',
    columns: [
      col('id', 'integer', 'integer'),
      col('title', 'text NOT NULL', 'text'),
      col('rev', 'integer NOT NULL', 'integer'),
      col('body', 'text', 'text'),
    ],
  },
  {
    name: 'lines',
    key: ['order_id', 'line_no'],
    orderBy: 'order_id, line_no',
    identity: 'full',
    columns: [
      col('order_id', 'bigint', 'bigint'),
      col('line_no', 'integer', 'integer'),
      col('sku', 'text NOT NULL', 'text'),
      col('qty', 'integer NOT NULL', 'integer'),
      col('price', 'numeric(10,2)', 'numeric', { json: asText }),
    ],
  },
  {
    // Text composite key whose values hold the Redis key separator ':' and the id separator '|'.
    name: 'kv',
    key: ['ns', 'k'],
    orderBy: 'ns COLLATE "C", k COLLATE "C"',
    identity: 'default',
    columns: [col('ns', 'text', 'text'), col('k', 'text', 'text'), col('n', 'integer', 'integer'), col('v', 'jsonb', 'jsonb', { json: (c) => c })],
  },
  { name: 'trunc_me', key: ['id'], orderBy: 'id', identity: 'default', columns: [col('id', 'integer', 'integer'), col('v', 'text', 'text')] },
  { name: 'trunc_refill', key: ['id'], orderBy: 'id', identity: 'default', columns: [col('id', 'integer', 'integer'), col('v', 'text', 'text')] },
  {
    // One row per workload phase: when its change is in Kafka, everything before it is.
    name: 'marker',
    key: ['seq'],
    orderBy: 'seq',
    identity: 'default',
    columns: [col('seq', 'integer', 'integer'), col('note', 'text', 'text')],
  },
];

const q = (id: string) => `"${id.replace(/"/g, '""')}"`;

function schemaSql(): string {
  const tables = TABLES.map((t) => {
    const cols = t.columns.map((c) => `${q(c.name)} ${c.type}`).join(', ');
    const identity = t.identity === 'full' ? `ALTER TABLE ${q(t.name)} REPLICA IDENTITY FULL;` : '';
    return `CREATE TABLE ${q(t.name)} (${cols}, PRIMARY KEY (${t.key.map(q).join(', ')}));${identity}`;
  });
  return [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');",
    ...tables,
    // Out of line and uncompressed: the body is always TOASTed, whatever its content.
    'ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;',
    // About 100 KB of text that differs per seed.
    `CREATE FUNCTION big_text(seed integer) RETURNS text LANGUAGE sql IMMUTABLE AS
       $$ SELECT string_agg(md5(seed || ':' || i), '') FROM generate_series(1, 3200) AS i $$;`,
    // A row of every type for seed g, with the edges of each type on the first rows.
    `CREATE FUNCTION all_types_row(g integer) RETURNS all_types LANGUAGE sql AS $$ SELECT
       g::bigint,
       CASE WHEN g % 9 = 0 THEN NULL WHEN g = 2 THEN 999999999.999 ELSE round(g * 12.345 - 100, 3) END::numeric(12,3),
       CASE WHEN g % 8 = 0 THEN NULL WHEN g % 3 = 0 THEN (g * 10)::numeric(10,2) WHEN g = 1 THEN 1e-20 ELSE g::numeric / 7 END,
       (g * 3.75 - 50)::numeric::money,
       CASE g WHEN 1 THEN -32768 WHEN 2 THEN 32767 ELSE g * 700 - 9000 END::smallint,
       CASE g WHEN 1 THEN -2147483648 WHEN 2 THEN 2147483647 ELSE g * 40000000 - 1000000000 END::integer,
       CASE g WHEN 1 THEN 9223372036854775807 WHEN 2 THEN -9223372036854775808 WHEN 3 THEN 9007199254740993
              WHEN 4 THEN 9007199254740991 ELSE g * 1000000000000 END::bigint,
       CASE g WHEN 1 THEN 3.4e38 WHEN 2 THEN 1e-30 ELSE g / 3.0 END::real,
       CASE g WHEN 1 THEN 1.7976931348623157e308 WHEN 2 THEN -5e-324 ELSE g * pi() END,
       CASE WHEN g % 10 = 0 THEN NULL ELSE g % 3 = 0 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE repeat('ü', g % 5) || ' "text" ' || g || E' \\\\ tab\\there 🙂 line\\nbreak' END,
       ('vc-' || g)::varchar(40),
       CASE WHEN g % 13 = 0 THEN ''::bytea ELSE decode(md5(g::text), 'hex') || '\\x00ff'::bytea END,
       CASE g WHEN 1 THEN '0001-01-01'::date WHEN 2 THEN '9999-12-31'::date ELSE date '2024-02-28' + g * 17 END,
       CASE g WHEN 1 THEN '23:59:59.999999'::time WHEN 2 THEN '00:00:00'::time ELSE time '00:00' + g * interval '37 min 12.345678 s' END,
       CASE g WHEN 1 THEN '0001-01-01 00:00:00'::timestamp WHEN 2 THEN '9999-12-31 23:59:59.999999'::timestamp
              ELSE timestamp '1999-12-31 23:59:59.999999' + g * interval '13 days 01:02:03.000001' END,
       CASE g WHEN 1 THEN '1900-01-01 00:00:00+00'::timestamptz WHEN 2 THEN '2262-04-11 23:47:16.854775+00'::timestamptz
              ELSE timestamptz '2024-03-31 01:30:00+02' + g * interval '7 hours 0.5 s' END,
       make_interval(years => g % 3, months => g % 13 - 6, days => g % 40 - 20, hours => g, mins => g % 60, secs => g * 1.000001),
       md5(g::text)::uuid,
       ('{"n": ' || g || ',  "s": "x' || g || '", "arr": [1, 2, 3], "nested": {"k": "v", "z": null}, "n": ' || (g + 1) || '}')::json,
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a', 'b' || g), 'f', (g * 0.25)::float8, 'ok', g % 2 = 0, 'deep', jsonb_build_object('x', 'é'),
         -- Types mixed in one array and across rows: one Elasticsearch field must take them all.
         'nested', jsonb_build_object('arr', CASE WHEN g % 2 = 0 THEN jsonb_build_array(1, 'two', NULL) ELSE to_jsonb('x'::text) END)),
       CASE WHEN g % 7 = 0 THEN NULL WHEN g % 6 = 0 THEN '{}' ELSE ARRAY[g, NULL, -g] END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE ARRAY[g::bigint, 9223372036854775807 - g, -9223372036854775808 + g] END::bigint[],
       ARRAY['a b', 'c,d', NULL, '', '"q"', '\\', '{x}', 'NULL', 'x' || g],
       (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood
     $$;`,
    'INSERT INTO snap_items SELECT g, \'item \' || g, g, g * 1.5 FROM generate_series(1, 50) AS g;',
  ].join('\n');
}

/** The workload, in three phases of statements; a string with several statements is one transaction. */
const PHASES: readonly (readonly string[])[] = [
  [
    'INSERT INTO all_types SELECT r.* FROM generate_series(1, 40) AS g, all_types_row(g) AS r',
    "INSERT INTO docs SELECT g, 'doc ' || g, 1, CASE WHEN g <= 6 THEN big_text(g) ELSE 'short body ' || g END FROM generate_series(1, 8) AS g",
    "INSERT INTO lines SELECT o, l, 'sku-' || o || '-' || l, (o * l) % 7 + 1, o * l * 1.25 FROM generate_series(1, 20) AS o, generate_series(1, 5) AS l",
    `INSERT INTO kv VALUES ('a', 'x:y', 1, '{"v": 1}'), ('a', 'p|q', 2, '{"v": 2}'), ('a', 'back\\slash', 3, '{"v": 3}'),
       ('b:c', 'k', 4, '{"v": 4}'), ('b|c', 'k', 5, '{"v": 5}'), ('ünï', '', 6, '{"v": 6}'), ('gone', 'soon', 7, '{"v": 7}')`,
    "INSERT INTO trunc_me SELECT g, 'v' || g FROM generate_series(1, 30) AS g",
    "INSERT INTO trunc_refill SELECT g, 'v' || g FROM generate_series(1, 30) AS g",
    "UPDATE snap_items SET qty = qty + 1, label = label || ' (updated)' WHERE id % 3 = 0",
    'DELETE FROM snap_items WHERE id % 10 = 0',
    "INSERT INTO snap_items SELECT g, 'item ' || g, g, g * 1.5 FROM generate_series(51, 70) AS g",
    `BEGIN;
     INSERT INTO lines SELECT 21, l, 'tx-' || l, l, 9.99 FROM generate_series(1, 3) AS l;
     UPDATE all_types SET t_text = 'changed in a transaction' WHERE id = 5;
     DELETE FROM kv WHERE ns = 'gone';
     UPDATE snap_items SET price = price * 2 WHERE id = 1;
     COMMIT`,
    "INSERT INTO marker VALUES (1, 'phase 1')",
  ],
  [
    // Bodies untouched: the placeholder for the TOASTed ones.
    "UPDATE docs SET title = title || ' v2', rev = rev + 1",
    'UPDATE docs SET body = big_text(1002), rev = rev + 1 WHERE id = 2',
    // Untouched again: the targets must keep the new body, not the first one.
    'UPDATE docs SET rev = rev + 1 WHERE id = 2',
    'DELETE FROM docs WHERE id = 5',
    'UPDATE docs SET body = NULL WHERE id = 6',
    "UPDATE docs SET title = 'no body' WHERE id = 6",
    `UPDATE all_types SET n_fixed = -n_fixed, t_text = NULL, a_int = a_int || 99, jb = jb || '{"u": true}',
       tm = tm + interval '1 hour', bin = bin || '\\x01'::bytea WHERE id % 4 = 1`,
    // Primary key changes: Debezium sends a delete of the old key and a create of the new one.
    'UPDATE all_types SET id = id + 1000 WHERE id % 7 = 0',
    'DELETE FROM all_types WHERE id % 5 = 0',
    'UPDATE lines SET line_no = line_no + 10 WHERE line_no = 2',
    // Two keys swapped through a third inside one transaction.
    `BEGIN;
     UPDATE lines SET line_no = 99 WHERE order_id = 1 AND line_no = 1;
     UPDATE lines SET line_no = 1, sku = 'was 3' WHERE order_id = 1 AND line_no = 3;
     UPDATE lines SET line_no = 3, sku = 'was 1' WHERE order_id = 1 AND line_no = 99;
     COMMIT`,
    'DELETE FROM lines WHERE order_id % 4 = 0',
    // Inserted, changed and deleted in one transaction; another row changed twice.
    `BEGIN;
     INSERT INTO all_types (id, t_text) VALUES (500, 'ephemeral');
     UPDATE all_types SET t_text = 'still ephemeral' WHERE id = 500;
     DELETE FROM all_types WHERE id = 500;
     INSERT INTO lines VALUES (30, 1, 'thirty', 1, 3.00);
     UPDATE lines SET qty = qty + 1 WHERE order_id = 30;
     UPDATE lines SET qty = qty + 1, price = 3.50 WHERE order_id = 30;
     COMMIT`,
    'TRUNCATE trunc_me, trunc_refill',
    "INSERT INTO trunc_me SELECT g, 'again ' || g FROM generate_series(1, 10) AS g",
    "INSERT INTO trunc_refill SELECT g, 'refill ' || g FROM generate_series(5, 20) AS g",
    "UPDATE kv SET k = k || '-moved', n = n * 10 WHERE ns = 'a'",
    "INSERT INTO marker VALUES (2, 'phase 2')",
  ],
  [
    'TRUNCATE trunc_me',
    'UPDATE docs SET rev = rev + 10',
    "UPDATE snap_items SET label = 'final ' || id WHERE id % 2 = 0",
    'DELETE FROM snap_items WHERE id BETWEEN 20 AND 25',
    "UPDATE all_types SET tstz = tstz + interval '1 day', iv = -iv, f8 = -f8, mood = 'ok' WHERE id % 3 = 0",
    'INSERT INTO all_types SELECT r.* FROM generate_series(41, 50) AS g, all_types_row(g) AS r',
    "UPDATE trunc_refill SET v = v || '!' WHERE id % 2 = 0",
    `UPDATE kv SET v = v || '{"w": [true, false]}' WHERE ns <> 'a'`,
    "INSERT INTO marker VALUES (3, 'phase 3')",
  ],
];

/** Both servers print values the same way. */
const SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1";

function compareSql(t: TableSpec, side: 'source' | 'target', qualified: string): string {
  const exprs = t.columns.map((c) => {
    const ref = `t.${q(c.name)}`;
    const e = side === 'source' && c.source ? c.source(ref) : `${ref}::text`;
    return `${e} AS ${q(c.name)}`;
  });
  return `SELECT ${exprs.join(', ')} FROM ${qualified} AS t ORDER BY ${t.orderBy}`;
}

function projectionSql(t: TableSpec): string {
  const pairs = t.columns.map((c) => {
    const ref = `t.${q(c.name)}`;
    return `'${c.name}', ${c.json ? c.json(ref) : `to_jsonb(${ref})`}`;
  });
  return `SELECT jsonb_build_object(${pairs.join(', ')}) AS doc FROM ${q(t.name)} AS t ORDER BY ${t.orderBy}`;
}

/** The Redis key the sink derives from a row key: values joined by ':', '\' and ':' escaped. */
function redisKeyOf(prefix: string, t: TableSpec, row: Record<string, unknown>): string {
  const parts = t.key.map((k) => String(row[k]).replace(/[\\:]/g, (ch) => `\\${ch}`));
  return `${prefix}${t.name}:${parts.join(':')}`;
}

/** The Elasticsearch _id: the value of a one-column key; several joined by '|', '\' and '|' escaped. */
function documentIdOf(t: TableSpec, row: Record<string, unknown>): string {
  if (t.key.length === 1) return String(row[t.key[0]!]);
  return t.key.map((k) => String(row[k]).replace(/[\\|]/g, (ch) => `\\${ch}`)).join('|');
}

const withoutPosition = (row: Record<string, unknown>) => Object.fromEntries(Object.entries(row).filter(([k]) => k !== '__cdc_position'));

describe('real CDC end to end: Debezium PostgreSQL → cdc-router → PostgreSQL, Redis, Elasticsearch', () => {
  let kafka: KafkaFixture;
  let stores: Stores;
  let dir: string;
  const cleanups: (() => Promise<void>)[] = [];
  const routers = routerChildren();

  beforeAll(async () => {
    await ensureCdcServers();
    kafka = await kafkaFixture();
    stores = await openStores();
    await stores.pg.query(SESSION);
    dir = await mkdtemp(join(tmpdir(), 'cdc-e2e-'));
  });

  /** Newest first: the router before its targets, the connector before its database. */
  async function cleanUp(): Promise<void> {
    await routers.killAll();
    for (let cleanup = cleanups.pop(); cleanup; cleanup = cleanups.pop()) {
      await cleanup().catch((err: unknown) => console.warn('e2e cleanup failed', err));
    }
  }

  afterAll(async () => {
    await cleanUp();
    await stores?.close();
    await kafka?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function runScenario(kills: number): Promise<void> {
    const id = uniqueSourceName('e2e');
    const pgSchema = `${id}_target`;
    const redisPrefix = `${id}:`;
    const esPrefix = id.replace(/_/g, '-');
    const group = `${id}-router`;

    // Source: a database of its own, its schema, and the rows the snapshot will read.
    const db: SourceDatabase = await createSourceDatabase(id);
    cleanups.push(() => db.drop());
    await db.client.query(SESSION);
    await db.client.query(schemaSql());

    // Topics made up front: a topic_pattern is resolved when the router subscribes.
    const connectorTopics = TABLES.map((t) => `${id}.public.${t.name}`);
    for (const topic of [...connectorTopics, `${id}.transaction`]) await kafka.createTopic(topic, 1);
    cleanups.push(() => stores.cleanup({ pgSchemas: [pgSchema], redisPrefixes: [redisPrefix], esIndexPattern: `${esPrefix}-*` }));
    cleanups.push(async () => {
      await kafka.admin.deleteTopics({ topics: [`__debezium-heartbeat.${id}`] }).catch(() => undefined);
    });

    const connector: DebeziumConnector = await registerConnector({
      name: id,
      database: id,
      tables: TABLES.map((t) => `public.${t.name}`),
      // Debezium skips truncates unless told otherwise.
      config: { 'skipped.operations': 'none' },
    });
    cleanups.push(() => connector.drop());
    const topics = [...TABLES.map((t) => connector.topicOf(t.name)), connector.transactionTopic];

    const configPath = join(dir, `${id}.json`);
    await writeFile(
      configPath,
      JSON.stringify({
        kafka: {
          brokers: [BROKER],
          group_id: group,
          topic_pattern: `^${connector.prefix}\\.`,
          heartbeat_interval_ms: 1000,
          session_timeout_ms: 6000,
        },
        sinks: {
          pg: { kind: 'postgres', connection: { connection_string: PG_URL }, schema: pgSchema },
          cache: { kind: 'redis', url: REDIS_URL, key_prefix: redisPrefix, mode: 'json' },
          search: {
            kind: 'elasticsearch',
            nodes: ES_URL,
            index_template: `${esPrefix}-{table}`,
            // Dynamic mapping makes every JSON fraction an ES `float`, which cannot hold a double
            // beyond 3.4e38 (1.79e308 is refused for good): double precision columns are mapped.
            tables: { 'public.all_types': { mapping: { f8: { type: 'double' } } } },
          },
        },
        routes: [{ table: '*', sinks: ['pg', 'cache', 'search'] }],
        retry: { initial_ms: 100, max_ms: 2000 },
        log: { level: 'warn' },
      }),
    );
    routers.resetLog();
    let router = routers.start(configPath);

    const committedSum = async () => {
      let sum = 0n;
      for (const topic of topics) for (const off of (await kafka.committed(group, topic)).values()) if (off > 0n) sum += off;
      return sum;
    };
    for (const [i, phase] of PHASES.entries()) {
      const before = await committedSum();
      for (const sql of phase) await db.client.query(sql);
      if (i < kills) {
        // Kill as soon as the router has committed something of this phase, while Debezium is
        // still streaming it; the next phase runs while no router is up.
        await routers.waitFor(async () => (await committedSum()) > before, `the router to commit part of phase ${i + 1}`);
        let end = 0n;
        for (const topic of topics) for (const e of (await kafka.endOffsets(topic)).values()) end += e;
        // Seen: 22 of 341 and 78 of 599 records committed at the two kills.
        routers.note(`kill -9 with ${await committedSum()} of ${end} records committed`);
        await routers.killHard(router);
        router = routers.start(configPath);
      }
    }

    // Drained: the last marker is in Kafka, and the group's commits reach the end of every topic
    // (twice in a row, with the same end offsets).
    const markerTopic = connector.topicOf('marker');
    await routers.waitFor(async () => ((await kafka.endOffsets(markerTopic)).get(0) ?? 0n) >= BigInt(PHASES.length), 'the last marker in Kafka');
    let lastEnds = '';
    await routers.waitFor(async () => {
      const ends: string[] = [];
      for (const topic of topics) {
        const end = await kafka.endOffsets(topic);
        const committed = await kafka.committed(group, topic);
        for (const [p, e] of end) {
          if (e > 0n && committed.get(p) !== e) return false;
          ends.push(`${topic}/${p}:${e}`);
        }
      }
      const now = ends.join(',');
      const stable = now === lastEnds;
      lastEnds = now;
      return stable;
    }, 'the router to commit every topic to its end');
    // What Debezium wrote exercises what this test claims: snapshot reads, truncates, key changes
    // (delete + create) and the unchanged-TOAST placeholder (6 + 1 + 4 updates leave a TOASTed body alone).
    const ops = new Map<string, Set<string>>();
    let placeholders = 0;
    for (const r of await readTopics(connectorTopics)) {
      if (r.value === null) continue;
      const op = (JSON.parse(r.value) as { payload?: { op?: string } }).payload?.op ?? '?';
      const table = r.topic.slice(r.topic.lastIndexOf('.') + 1);
      ops.set(table, (ops.get(table) ?? new Set()).add(op));
      if (r.value.includes('"__debezium_unavailable_value"')) placeholders += 1;
    }
    expect(Object.fromEntries([...ops].map(([t, set]) => [t, [...set].sort().join('')]))).toEqual({
      all_types: 'cdu',
      snap_items: 'cdru',
      docs: 'cdu',
      lines: 'cdu',
      kv: 'cdu',
      trunc_me: 'ct',
      trunc_refill: 'ctu',
      marker: 'c',
    });
    expect(placeholders).toBe(11);

    const stopped = new Promise((r) => router.once('exit', r));
    router.kill('SIGTERM');
    expect(await stopped).toBe(0);

    // Soft: every table and store is compared, and every difference reported.
    for (const t of TABLES) {
      // PostgreSQL: the target's columns and types, then every row, column by column as text.
      const types = await stores.pg.query<{ name: string; type: string }>(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
         WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> '__cdc_position'`,
        [`${q(pgSchema)}.${q(t.name)}`],
      );
      expect.soft(Object.fromEntries(types.rows.map((r) => [r.name, r.type])), `target column types of ${t.name}`).toEqual(
        Object.fromEntries(t.columns.map((c) => [c.name, c.target])),
      );
      const source = await db.client.query<Record<string, string | null>>(compareSql(t, 'source', q(t.name)));
      const target = await stores.pg.query<Record<string, string | null>>(compareSql(t, 'target', `${q(pgSchema)}.${q(t.name)}`));
      expect.soft(target.rows, `PostgreSQL rows of ${t.name}`).toEqual(source.rows);

      // Redis and Elasticsearch: the projection of every source row, under its key.
      const projected = (await db.client.query<{ doc: Record<string, unknown> }>(projectionSql(t))).rows.map((r) => r.doc);
      const redis = await stores.redisJson(`${redisPrefix}${t.name}:`);
      expect.soft(new Map([...redis].map(([k, v]) => [k, withoutPosition(v)])), `Redis values of ${t.name}`).toEqual(
        new Map(projected.map((doc) => [redisKeyOf(redisPrefix, t, doc), doc])),
      );
      const index = `${esPrefix}-${t.name}`;
      await stores.es.indices.refresh({ index, ignore_unavailable: true });
      const hits = await stores.es.search<Record<string, unknown>>({ index, size: 10_000, ignore_unavailable: true, query: { match_all: {} } });
      expect.soft(new Map(hits.hits.hits.map((h) => [h._id, h._source])), `Elasticsearch documents of ${t.name}`).toEqual(
        new Map(projected.map((doc) => [documentIdOf(t, doc), doc])),
      );
    }
    // The workload did what it says: rows were deleted and a table truncated (so absence was checked).
    const counts = await db.client.query<{ t: string; n: string }>(
      "SELECT 'trunc_me' AS t, count(*)::text AS n FROM trunc_me UNION ALL SELECT 'docs', count(*)::text FROM docs",
    );
    expect(Object.fromEntries(counts.rows.map((r) => [r.t, r.n]))).toEqual({ trunc_me: '0', docs: '7' });
  }

  it('every target equals the source after the workload (snapshot, streaming, TOAST, truncate)', async () => {
    try {
      await runScenario(0);
    } finally {
      await cleanUp();
    }
  });

  it('every target still equals the source with the router killed (kill -9) twice during the workload', async () => {
    try {
      await runScenario(2);
    } finally {
      await cleanUp();
    }
  });
});
