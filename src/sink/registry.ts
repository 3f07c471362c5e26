import { elasticsearchSink } from '../../connectors/elasticsearch/elasticsearch-sink.ts';
import { influxdbSink } from '../../connectors/influxdb/influxdb-sink.ts';
import { fileSink } from '../../connectors/file/file-sink.ts';
import { postgresSink } from '../../connectors/postgres/postgres-sink.ts';
import { redisSink } from '../../connectors/redis/redis-sink.ts';
import type { SinkFactory } from './sink.ts';

/** Built-in sink kinds. Only the composition root (config resolution) imports this map. */
export const builtinSinkKinds = {
  file: fileSink,
  postgres: postgresSink,
  redis: redisSink,
  elasticsearch: elasticsearchSink,
  influxdb: influxdbSink,
} satisfies Record<string, SinkFactory>;
