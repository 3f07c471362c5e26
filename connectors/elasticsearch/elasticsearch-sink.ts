import { readFile } from 'node:fs/promises';
import { Client, errors, type ClientOptions } from '@elastic/elasticsearch';
import { SinkError } from '../../src/errors.ts';
import { isUnavailable, type ChangeEvent, type Row, type TableId } from '../../src/model/change-event.ts';
import { positionToVersion } from '../../src/model/position.ts';
import { rowJson } from '../../src/model/serialize.ts';
import { coalesce, expandResults, keyString, type Segment } from '../../src/sink/coalesce.ts';
import { ExclusiveGate } from '../../src/sink/exclusive-gate.ts';
import { defineSink, OK, once, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import { BulkRequestError, deleteAction, indexAction, sendBulk, type BulkAction, type BulkOptions } from './bulk.ts';
import { classifyError, type Failure } from './classify.ts';
import { configSchema, type ElasticsearchSinkConfig } from './config.ts';
import { createIndexMappings } from './index-mappings.ts';
import { documentId, indexNameFor } from './naming.ts';

export { configSchema };
export { documentId, indexNameFor } from './naming.ts';

const KIND = 'elasticsearch';

type Columns = ChangeEvent['columns'];

/** A change ready to become a bulk action. */
interface Prepared {
  readonly slot: number;
  readonly event: ChangeEvent;
  readonly index: string;
  readonly id: string;
  readonly version: bigint;
  /** Some columns are the unchanged-TOAST marker: the stored document fills them in. */
  readonly partial: boolean;
}

function hasUnavailable(row: Readonly<Row>): boolean {
  for (const k in row) if (isUnavailable(row[k])) return true;
  return false;
}

/** The row as JSON. Unavailable markers are symbols, which JSON.stringify leaves out. */
/**
 * The row with its unavailable columns taken from the stored document. A null-prototype object, so
 * that a column named `__proto__` is a column. Columns the stored document lacks are left out.
 */
function mergeStored(after: Readonly<Row>, stored: Readonly<Row> | undefined): Row {
  const doc = Object.create(null) as Row;
  for (const [col, v] of Object.entries(after)) {
    if (!isUnavailable(v)) doc[col] = v;
    else if (stored && Object.hasOwn(stored, col)) doc[col] = stored[col];
  }
  return doc;
}

function redactUrl(node: string): string {
  const url = new URL(node);
  url.username = '';
  url.password = '';
  return url.origin;
}

/**
 * Elasticsearch sink: one index per table, the row as the document, the key as `_id`, and the
 * change's position as the document's external version. Elasticsearch itself then refuses any write
 * whose version is not higher than the stored one (409), which is the stale-write guard; a delete
 * leaves a versioned tombstone for `index.gc_deletes`, which the sink sets on the indices it creates
 * to `tombstone_retention`.
 *
 * Unchanged-TOAST columns: a bulk `update` cannot carry an external version and this cluster may
 * have no scripting, so the sink reads the stored documents of such changes (one realtime mget),
 * fills the columns in and indexes the full document with the change's version. If the stored
 * document is as new or newer, the index action is refused with 409 (stale: success). That read and
 * write are not atomic; it relies on the pipeline writing one key from one partition in order.
 *
 * Truncate (`apply`): record the truncate's version as the index's watermark (mapping `_meta`;
 * later writes of older changes are skipped), refresh, scroll every `_id` of the index and
 * bulk-delete them with the truncate's position as version. Unlike dropping and recreating the index, this keeps the index's
 * mapping and settings, leaves tombstones so that replayed older inserts stay out, and spares
 * documents newer than the truncate (their deletes get 409).
 */
/** Where an index's truncate watermark lives in its mapping's `_meta`. */
const WATERMARK_META = 'cdc_router_truncated';
/** How long a read watermark is trusted (another router's truncate is seen within this time). */
const WATERMARK_TTL_MS = 1_000;

type MappingResponse = Record<string, { mappings?: { _meta?: Record<string, unknown> } } | undefined>;

/** The `_meta` of a get-mapping answer for one index (keyed by its concrete name). */
function metaIn(mapping: MappingResponse): Record<string, unknown> {
  return Object.values(mapping)[0]?.mappings?._meta ?? {};
}

function markIn(mapping: MappingResponse): bigint | undefined {
  const v = metaIn(mapping)[WATERMARK_META];
  return typeof v === 'string' && /^\d+$/.test(v) ? BigInt(v) : undefined;
}

export const elasticsearchSink = defineSink({
  kind: KIND,
  configSchema,
  create(name, config: ElasticsearchSinkConfig, { logger }): Sink {
    const log = logger.child({ component: 'sink', sink: name, kind: KIND });
    let client: Client | undefined;
    const indexNames = new Map<string, { name: string; json: string }>();
    const watermarks = new Map<string, { version: bigint | undefined; readAt: number }>();
    /** Indices whose watermark is being read ahead of its expiry. */
    const refreshing = new Set<string>();
    const gate = new ExclusiveGate();
    const bulkOptions: BulkOptions = {
      maxDocs: config.max_docs_per_request,
      maxBytes: config.max_bytes_per_request,
      concurrency: config.max_concurrent_requests,
      refresh: config.refresh,
    };

    const fail = (failure: Failure, message: string, cause?: unknown): SinkError =>
      new SinkError(name, `${message}: ${failure.message}`, { code: failure.code, retriable: failure.retriable, cause });
    const recordError = (event: ChangeEvent, where: string, failure: Failure, cause?: unknown): SinkResult => ({
      ok: false,
      error: fail(failure, `table ${event.table.id}${event.key ? ` key ${keyString(event.key)}` : ''} (${where})`, cause),
    });
    const permanent = (code: string, message: string): Failure => ({ retriable: false, code, message, status: undefined });
    const thrown = (err: unknown, what: string): SinkError => {
      if (err instanceof BulkRequestError) return fail(err.failure, what, err.cause);
      return fail(classifyError(err), what, err);
    };

    const mappings = createIndexMappings({ config, log, fail });

    const started = (): Client => {
      if (!client) throw new SinkError(name, 'write before start', { code: 'NOT_STARTED', retriable: false });
      return client;
    };

    const indexOf = (table: TableId) => {
      // Not table.id: schema "a.b" + table "c" and schema "a" + table "b.c" share that id.
      const cacheKey = `${table.db ?? ''}\u0000${table.schema ?? ''}\u0000${table.table}`;
      let entry = indexNames.get(cacheKey);
      if (!entry) {
        const index = indexNameFor(config.index_template, table);
        entry = { name: index, json: JSON.stringify(index) };
        indexNames.set(cacheKey, entry);
      }
      return entry;
    };

    /**
     * The index's truncate watermark: the version of its last truncate, kept in the mapping's `_meta`
     * (it outlives the process and is seen by every router writing the index). Read again after
     * WATERMARK_TTL_MS, so another process's truncate is seen within that time; this process's own
     * truncates at once. An index written to keeps its watermark fresh in the background from half
     * the TTL on, so its writes do not wait for a mapping read once a second.
     */
    async function watermarkOf(es: Client, index: string): Promise<bigint | undefined> {
      const cached = watermarks.get(index);
      const age = cached ? performance.now() - cached.readAt : Infinity;
      if (cached && age < WATERMARK_TTL_MS) {
        if (age >= WATERMARK_TTL_MS / 2 && !refreshing.has(index)) {
          refreshing.add(index);
          readWatermark(es, index, true)
            .catch(() => undefined) // the next write past the TTL reads again, and fails if that fails
            .finally(() => refreshing.delete(index));
        }
        return cached.version;
      }
      return readWatermark(es, index, cached !== undefined);
    }

    /** Reads the watermark and keeps it, unless a newer read or a truncate of this process came meanwhile. */
    async function readWatermark(es: Client, index: string, warned: boolean): Promise<bigint | undefined> {
      const startedAt = performance.now();
      let version: bigint | undefined;
      try {
        version = markIn(await es.indices.getMapping({ index }));
      } catch (err) {
        const status = err instanceof errors.ResponseError ? err.statusCode : undefined;
        if (status === 403) {
          // A user allowed to write documents but not to read mappings: writes go on unchecked.
          if (!warned) log.warn({ index }, 'cannot read the index mapping (403): truncate watermarks are not checked for this index');
        } else if (status !== 404) {
          throw thrown(err, `cannot read the truncate watermark of index ${index}`);
        }
      }
      // Fresh as of the request, not the answer: the TTL counts from when the mapping was read.
      if ((watermarks.get(index)?.readAt ?? -Infinity) <= startedAt) watermarks.set(index, { version, readAt: startedAt });
      return watermarks.get(index)?.version;
    }

    /** Raises the index's watermark to `version` (never lowers it). */
    async function raiseWatermark(es: Client, index: string, version: bigint): Promise<void> {
      const mapping = await es.indices.getMapping({ index });
      const current = markIn(mapping);
      if (current === undefined || current < version) {
        await es.indices.putMapping({ index, _meta: { ...metaIn(mapping), [WATERMARK_META]: version.toString() } });
      }
      watermarks.set(index, { version: current !== undefined && current > version ? current : version, readAt: performance.now() });
    }

    /** The stored sources of the partial changes, by slot; absent when the document is not there. */
    async function readStored(es: Client, partial: readonly Prepared[]): Promise<Map<number, Row>> {
      const stored = new Map<number, Row>();
      for (let start = 0; start < partial.length; start += config.max_docs_per_request) {
        const part = partial.slice(start, start + config.max_docs_per_request);
        let res;
        try {
          res = await es.mget<Row>({ docs: part.map((p) => ({ _index: p.index, _id: p.id })), realtime: true });
        } catch (err) {
          throw thrown(err, 'cannot read stored documents for unchanged-TOAST columns');
        }
        res.docs.forEach((doc, i) => {
          // A missing index or document has nothing to carry: the column is left out.
          if ('found' in doc && doc.found && doc._source) stored.set(part[i]!.slot, doc._source);
        });
      }
      return stored;
    }

    /**
     * Ensures each index of the batch and each schema its changes carry; the failures by index and
     * schema. The first change per index is the one that creates it: preferably one with a schema
     * (it types the index's fields).
     */
    async function ensureMappings(es: Client, prepared: readonly Prepared[]): Promise<Map<string, Map<Columns, Failure>>> {
      const schemas = new Map<string, Map<Columns, ChangeEvent>>();
      for (const p of prepared) {
        let perIndex = schemas.get(p.index);
        if (!perIndex) schemas.set(p.index, (perIndex = new Map()));
        if (!perIndex.has(p.event.columns)) perIndex.set(p.event.columns, p.event);
      }
      const refused = new Map<string, Map<Columns, Failure>>();
      await Promise.all(
        [...schemas].map(async ([index, perIndex]) => {
          const events = [...perIndex.values()].sort((a, b) => (a.columns ? 0 : 1) - (b.columns ? 0 : 1));
          for (const event of events) {
            const failure = await mappings.ensure(es, index, event);
            if (!failure) continue;
            let f = refused.get(index);
            if (!f) refused.set(index, (f = new Map()));
            f.set(event.columns, failure);
          }
        }),
      );
      return refused;
    }

    async function writeChanges(es: Client, events: readonly ChangeEvent[]): Promise<SinkResult[]> {
      const results = new Array<SinkResult>(events.length).fill(OK);
      const prepared: Prepared[] = [];
      events.forEach((event, slot) => {
        const index = indexOf(event.table).name;
        const version = positionToVersion(event.position);
        if (version === undefined) {
          const failure = permanent('POSITION_NOT_A_VERSION', `position [${event.position.parts.join(', ')}] has no 64-bit form for external versioning`);
          results[slot] = recordError(event, `index ${index}`, failure);
          return;
        }
        const id = documentId(event.key);
        if ('error' in id) {
          results[slot] = recordError(event, `index ${index}`, permanent('BAD_DOCUMENT_ID', id.error));
          return;
        }
        if (event.op !== 'd' && !event.after) {
          results[slot] = recordError(event, `index ${index}`, permanent('NO_ROW', `a '${event.op}' change without a row`));
          return;
        }
        const partial = event.op !== 'd' && hasUnavailable(event.after!);
        prepared.push({ slot, event, index, id: id.id, version, partial });
      });

      // Indices and their mappings first (in parallel): the records of an index that cannot be created,
      // or of a schema its mapping cannot hold, fail; the others go on.
      const refused = await ensureMappings(es, prepared);
      const refusal = (p: Prepared) => refused.get(p.index)?.get(p.event.columns);
      const writable = refused.size === 0 ? prepared : prepared.filter((p) => !refusal(p));
      // Changes not newer than their index's last truncate are stale (ok, not written): a truncate
      // may be written before older changes of another partition, or replayed before them.
      let live = writable;
      if (config.truncate === 'apply') {
        const indices = [...new Set(writable.map((p) => p.index))];
        const marks = new Map(await Promise.all(indices.map(async (i) => [i, await watermarkOf(es, i)] as const)));
        live = writable.filter((p) => {
          const mark = marks.get(p.index);
          return mark === undefined || p.version > mark;
        });
      }
      for (const p of prepared) {
        const f = refusal(p);
        if (f) results[p.slot] = recordError(p.event, `index ${p.index}`, f);
      }

      const partial = live.filter((p) => p.partial);
      const stored = partial.length > 0 ? await readStored(es, partial) : undefined;

      // Built lazily: sendBulk serializes the next request while the previous one is indexed.
      function* actions(): Generator<BulkAction> {
        for (const p of live) {
          const indexJson = indexOf(p.event.table).json;
          if (p.event.op === 'd') {
            yield deleteAction(p.slot, indexJson, p.id, p.version);
            continue;
          }
          const row = p.partial ? mergeStored(p.event.after!, stored?.get(p.slot)) : p.event.after!;
          let source: string;
          try {
            source = rowJson(row);
          } catch (err) {
            results[p.slot] = recordError(p.event, `index ${p.index}`, permanent('NOT_SERIALIZABLE', String(err)), err);
            continue;
          }
          yield indexAction(p.slot, indexJson, p.id, p.version, source);
        }
      }

      let failures: Map<number, Failure>;
      try {
        failures = await sendBulk(es, actions(), bulkOptions);
      } catch (err) {
        throw thrown(err, `bulk write of ${live.length} changes failed`);
      }
      if (failures.size > 0) {
        const bySlot = new Map(live.map((p) => [p.slot, p]));
        for (const [slot, f] of failures) {
          const p = bySlot.get(slot)!;
          results[slot] = recordError(p.event, `index ${p.index}, _id ${p.id}`, f);
        }
      }
      return results;
    }

    /** Deletes every document of the table's index with a version below the truncate's. */
    async function truncate(es: Client, event: ChangeEvent): Promise<SinkResult> {
      if (config.truncate === 'ignore') return OK;
      const { name: index, json: indexJson } = indexOf(event.table);
      const where = `truncate of index ${index}`;
      const version = positionToVersion(event.position);
      if (version === undefined) {
        return recordError(event, where, permanent('POSITION_NOT_A_VERSION', `position [${event.position.parts.join(', ')}] has no 64-bit form`));
      }
      let scrollId: string | undefined;
      try {
        // First the watermark, so that older changes are refused from now on; an index that does not
        // exist yet is made for it (older changes may still come).
        const created = await mappings.ensure(es, index, event);
        if (created) return recordError(event, where, created);
        await raiseWatermark(es, index, version);
        // Search sees only refreshed documents; the changes written before the truncate must be among them.
        await es.indices.refresh({ index });
        let page = await es.search({
          index,
          scroll: '1m',
          size: config.max_docs_per_request,
          sort: ['_doc'],
          _source: false,
        });
        for (;;) {
          scrollId = page._scroll_id;
          const hits = page.hits.hits;
          if (hits.length === 0) break;
          const actions = hits.flatMap((h, i) => (h._id === undefined ? [] : [deleteAction(i, indexJson, h._id, version)]));
          const failures = await sendBulk(es, actions, bulkOptions);
          const failed = failures.values().next().value;
          if (failed) {
            if (failed.retriable) throw new BulkRequestError(failed, { cause: undefined });
            return recordError(event, where, failed);
          }
          if (!scrollId) break;
          page = await es.scroll({ scroll_id: scrollId, scroll: '1m' });
        }
        log.info({ index, table: event.table.id }, 'truncate applied');
        return OK;
      } catch (err) {
        if (err instanceof SinkError) throw err; // from ensureIndex: retriable, already described
        // The index went away meanwhile: nothing to truncate.
        if (err instanceof errors.ResponseError && err.statusCode === 404) return OK;
        const failure = err instanceof BulkRequestError ? err.failure : classifyError(err);
        if (failure.retriable) throw fail(failure, where, err);
        return recordError(event, where, failure, err);
      } finally {
        if (scrollId) {
          await es.clearScroll({ scroll_id: scrollId }).catch((err: unknown) => {
            log.warn({ index, err: classifyError(err).message }, 'cannot clear scroll');
          });
        }
      }
    }

    return {
      name,
      kind: KIND,
      async start() {
        if (client) return;
        let ca: Buffer | undefined;
        if (config.tls?.ca_file) {
          try {
            ca = await readFile(config.tls.ca_file);
          } catch (err) {
            throw new SinkError(name, `cannot read tls.ca_file ${config.tls.ca_file}: ${String(err)}`, { code: 'CONFIG_TLS', retriable: false, cause: err });
          }
        }
        const auth: ClientOptions['auth'] = !config.auth
          ? undefined
          : 'api_key' in config.auth
            ? { apiKey: config.auth.api_key }
            : { username: config.auth.username, password: config.auth.password };
        const es = new Client({
          nodes: config.nodes,
          ...(auth ? { auth } : {}),
          ...(config.tls ? { tls: { ...(ca ? { ca } : {}), rejectUnauthorized: config.tls.reject_unauthorized } } : {}),
          requestTimeout: config.request_timeout_ms,
          maxRetries: config.max_retries,
          compression: config.compression,
        });
        try {
          // GET / may be disabled (and answers 405 on minimal distributions): cluster health always answers.
          const health = await es.cluster.health({ timeout: '5s' });
          log.info({ nodes: config.nodes.map(redactUrl), cluster: health.cluster_name, status: health.status }, 'elasticsearch sink connected');
        } catch (err) {
          await es.close().catch(() => undefined);
          throw fail(classifyError(err), 'cannot reach Elasticsearch', err);
        }
        client = es;
      },
      async write(batch) {
        const es = started();
        const segments = coalesce(batch);
        const results = new Map<Segment, readonly SinkResult[]>();
        for (const seg of segments) {
          // A truncate runs alone: a write checked against the old watermark and still in progress
          // could otherwise land after the truncate's scroll had passed its documents.
          results.set(
            seg,
            seg.kind === 'truncate' ? [await gate.runExclusive(() => truncate(es, seg.event))] : await gate.runShared(() => writeChanges(es, seg.events)),
          );
        }
        return expandResults(batch.length, segments, results);
      },
      close: once(async () => {
        const es = client;
        client = undefined;
        await es?.close();
      }),
    };
  },
});
