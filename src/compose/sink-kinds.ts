import { elasticsearchSink } from '../../connectors/elasticsearch/elasticsearch-sink.ts';
import { influxdbSink } from '../../connectors/influxdb/influxdb-sink.ts';
import { fileSink } from '../../connectors/file/file-sink.ts';
import { postgresSink } from '../../connectors/postgres/postgres-sink.ts';
import { redisSink } from '../../connectors/redis/redis-sink.ts';
import { byKind } from './by-kind.ts';

/** Built-in sink kinds, each key its factory's `kind`. Part of the composition root: only config resolution and its docs read it. */
export const builtinSinkKinds = byKind({
  file: fileSink,
  postgres: postgresSink,
  redis: redisSink,
  elasticsearch: elasticsearchSink,
  influxdb: influxdbSink,
});
