import { errors, type Client, type estypes } from '@elastic/elasticsearch';
import type { Logger } from 'pino';
import type { SinkError } from '../../src/errors.ts';
import type { ChangeEvent, ColumnSchema } from '../../src/model/change-event.ts';
import { permanent, type Failure } from '../failure.ts';
import { classify, describeServerError } from './classify.ts';
import type { ElasticsearchSinkConfig } from './config.ts';
import { describeConflict, mappingConflicts, mappingFromColumns, mergeProperties, missingFields, takesJsonMode, type FieldMapping, type JsonMode } from './mapping.ts';

/** What the sink knows of an index's field mappings. */
interface IndexState {
  /** Top-level `properties`, kept up to date with what this process adds. */
  readonly properties: Record<string, FieldMapping>;
  /** False when the user may not read mappings (403): columns are then neither checked nor added. */
  readonly readable: boolean;
  /**
   * Created here from a change without a schema: Elasticsearch maps its fields as documents arrive,
   * so `properties` is not what the index holds and is read again before a schema is compared.
   */
  readonly dynamic: boolean;
}

export interface IndexMappings {
  /**
   * The index exists, and every column of the change is mapped to a type that holds its values:
   * creates the index typed from the change's schema, or reads the mapping of an existing one; adds
   * columns it lacks (schema evolution); reports a column mapped to an incompatible type. Once per
   * index and per schema (the decoder shares one `columns` array between the changes of a schema),
   * not per record. Returns the permanent failure for the change's records; throws a retriable
   * SinkError; neither is remembered, so the next batch tries again.
   */
  ensure(es: Client, index: string, event: ChangeEvent): Promise<Failure | undefined>;
}

export interface IndexMappingsOptions {
  readonly config: ElasticsearchSinkConfig;
  readonly log: Logger;
  /** Builds the retriable error thrown for a transport failure. */
  readonly fail: (failure: Failure, message: string, cause?: unknown) => SinkError;
}

type MappingResponse = Record<string, { mappings?: { properties?: Record<string, FieldMapping> } } | undefined>;

/** User settings may be written with or without the `index.` prefix; Elasticsearch would see both. */
function normalizeSettings(settings: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(settings)) out[k.startsWith('index.') ? k : `index.${k}`] = v;
  return out;
}

function isAlreadyExists(err: unknown): boolean {
  if (!(err instanceof errors.ResponseError)) return false;
  const body: unknown = err.body;
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  return describeServerError(body.error).startsWith('resource_already_exists_exception');
}

/** An index made by someone else keeps its settings; say so when it forgets deletes sooner than configured. */
async function checkSettings(es: Client, index: string, config: ElasticsearchSinkConfig, log: Logger): Promise<void> {
  try {
    const res = await es.indices.getSettings({ index, name: 'index.gc_deletes', flat_settings: true, include_defaults: true });
    const entry = res[index];
    const value = entry?.settings?.['index.gc_deletes'] ?? entry?.defaults?.['index.gc_deletes'];
    if (value !== config.tombstone_retention) {
      log.warn(
        { index, gc_deletes: value, tombstone_retention: config.tombstone_retention },
        'existing index keeps delete tombstones for a different time than tombstone_retention',
      );
    }
  } catch (err) {
    log.warn({ index, err: classify(err).message }, 'cannot read index settings');
  }
}

export function createIndexMappings({ config, log, fail }: IndexMappingsOptions): IndexMappings {
  /** Per index; a failed creation or read is forgotten so that it is tried again. */
  const states = new Map<string, Promise<IndexState | Failure>>();
  /** Per index, the outcome of each schema's check (a conflict is remembered: it needs an operator). */
  const checked = new Map<string, WeakMap<readonly ColumnSchema[], Promise<Failure | undefined>>>();

  const jsonMode = (tableId: string) => {
    const perColumn = config.tables[tableId]?.json_columns ?? {};
    return (column: string): JsonMode => perColumn[column] ?? config.json_columns;
  };

  /** The schema's mapping, without the fields the table's configured `mapping` declares itself. */
  function wantedFor(event: ChangeEvent, columns: readonly ColumnSchema[]): Record<string, FieldMapping> {
    const wanted = mappingFromColumns(columns, jsonMode(event.table.id));
    for (const name of Object.keys(config.tables[event.table.id]?.mapping ?? {})) delete wanted[name];
    return wanted;
  }

  async function create(es: Client, index: string, event: ChangeEvent): Promise<IndexState | Failure> {
    const perTable = config.tables[event.table.id];
    const columns = event.columns;
    // Configured fields win over the schema's. Without a schema (schemas.enable=false) there is
    // nothing to type from, so Elasticsearch maps dynamically, but without date detection: a text
    // column whose first value looks like a date would otherwise refuse every later value that does
    // not, and disagree with the `text` its schema gives once changes with one arrive. With a schema,
    // fields it does not announce (e.g. added by a handler) are kept in _source but not indexed
    // (`dynamic: false`), so that no value is refused and no field is typed by its first value.
    const properties = { ...(columns ? wantedFor(event, columns) : {}), ...(perTable?.mapping as Record<string, FieldMapping> | undefined) };
    const settings = normalizeSettings({
      number_of_replicas: config.number_of_replicas,
      gc_deletes: config.tombstone_retention,
      ...config.index_settings,
      ...perTable?.settings,
    });
    const mappings = { ...(columns ? { dynamic: 'false' as const } : { date_detection: false }), ...(Object.keys(properties).length > 0 ? { properties } : {}) };
    try {
      await es.indices.create({ index, settings, mappings });
      log.info({ index, table: event.table.id, typed: columns !== undefined }, 'index created');
      return { properties, readable: true, dynamic: columns === undefined };
    } catch (err) {
      if (isAlreadyExists(err)) {
        await checkSettings(es, index, config, log);
        return read(es, index);
      }
      const failure = classify(err);
      if (failure.retriable) throw fail(failure, `cannot create index ${index}`, err);
      return { ...failure, message: `cannot create index ${index}: ${failure.message}` };
    }
  }

  /** The field mappings of an index made by someone else (or by this sink before a restart). */
  async function read(es: Client, index: string): Promise<IndexState | Failure> {
    try {
      const res = (await es.indices.getMapping({ index })) as MappingResponse;
      return { properties: { ...Object.values(res)[0]?.mappings?.properties }, readable: true, dynamic: false };
    } catch (err) {
      if (err instanceof errors.ResponseError && err.statusCode === 403) {
        log.warn({ index }, 'cannot read the index mapping (403): columns are neither checked against it nor added to it');
        return { properties: {}, readable: false, dynamic: false };
      }
      const failure = classify(err);
      if (failure.retriable) throw fail(failure, `cannot read the mapping of index ${index}`, err);
      return { ...failure, message: `cannot read the mapping of index ${index}: ${failure.message}` };
    }
  }

  function conflictWith(index: string, event: ChangeEvent, existing: Readonly<Record<string, FieldMapping>>, wanted: Readonly<Record<string, FieldMapping>>): Failure | undefined {
    const conflicts = mappingConflicts(existing, wanted);
    if (conflicts.length === 0) return undefined;
    const message =
      `index ${index} cannot hold table ${event.table.id}: ${conflicts.map(describeConflict).join('; ')}. ` +
      `Reindex into an index with the right types, or declare the field in tables."${event.table.id}".mapping`;
    log.error({ index, table: event.table.id, conflicts }, 'index mapping conflicts with the Debezium schema');
    return permanent('MAPPING_CONFLICT', message);
  }

  /** Compares the schema with the index's mapping; PUTs the columns it lacks. */
  async function check(es: Client, index: string, state: IndexState, event: ChangeEvent, columns: readonly ColumnSchema[]): Promise<Failure | undefined> {
    const configured = Object.keys(config.tables[event.table.id]?.json_columns ?? {});
    const unused = configured.filter((name) => !columns.some((c) => c.name === name && takesJsonMode(c)));
    if (unused.length > 0) log.warn({ index, table: event.table.id, columns: unused }, 'json_columns names columns that are not Json or map columns of the table: ignored');
    if (!state.readable) return undefined;
    const wanted = wantedFor(event, columns);
    if (state.dynamic) {
      const current = await read(es, index);
      if ('code' in current) return current;
      mergeProperties(state.properties, current.properties);
    }
    const conflict = conflictWith(index, event, state.properties, wanted);
    if (conflict) return conflict;
    const missing = missingFields(state.properties, wanted);
    if (Object.keys(missing).length === 0) return undefined;
    try {
      await es.indices.putMapping({ index, properties: missing as Record<string, estypes.MappingProperty> });
    } catch (err) {
      const failure = classify(err);
      if (failure.retriable) throw fail(failure, `cannot add fields to the mapping of index ${index}`, err);
      // Someone else (a dynamic mapping, another writer) mapped a field first: name it, if that is why.
      const current = await read(es, index);
      const raced = 'code' in current ? undefined : conflictWith(index, event, current.properties, wanted);
      return raced ?? { ...failure, message: `cannot add fields [${Object.keys(missing).join(', ')}] to the mapping of index ${index}: ${failure.message}` };
    }
    mergeProperties(state.properties, missing);
    log.info({ index, table: event.table.id, fields: Object.keys(missing) }, 'fields added to the index mapping');
    return undefined;
  }

  function stateOf(es: Client, index: string, event: ChangeEvent): Promise<IndexState | Failure> {
    let p = states.get(index);
    if (!p) {
      p = create(es, index, event);
      states.set(index, p);
      p.then(
        (s) => 'code' in s && states.delete(index),
        () => states.delete(index),
      );
    }
    return p;
  }

  return {
    async ensure(es, index, event) {
      const state = await stateOf(es, index, event);
      if ('code' in state) return state;
      const columns = event.columns;
      if (!columns) return undefined;
      let perSchema = checked.get(index);
      if (!perSchema) checked.set(index, (perSchema = new WeakMap()));
      let p = perSchema.get(columns);
      if (!p) {
        const result = check(es, index, state, event, columns);
        perSchema.set(columns, result);
        // A retriable failure is not remembered.
        const forget = () => perSchema.delete(columns);
        p = result;
        result.catch(forget);
      }
      return p;
    },
  };
}
