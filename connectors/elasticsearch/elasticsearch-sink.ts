import type { Client } from '@elastic/elasticsearch';
import { SinkError } from '../../src/errors.ts';
import { coalesce, expandResults, type Segment } from '../../src/sink/coalesce.ts';
import { ExclusiveGate } from '../../src/sink/exclusive-gate.ts';
import { defineSink, once, type Sink, type SinkResult } from '../../src/sink/sink.ts';
import type { BulkOptions } from './bulk.ts';
import { configSchema, type ElasticsearchSinkConfig } from './config.ts';
import { connect } from './connect.ts';
import { sinkFailures } from './failures.ts';
import { createIndexMappings } from './index-mappings.ts';
import { createIndexNames } from './naming.ts';
import { createTruncate } from './truncate.ts';
import { createWatermarks } from './watermarks.ts';
import { createChangeWriter } from './write-changes.ts';

export { configSchema };
export { documentId, indexNameFor } from './naming.ts';

const KIND = 'elasticsearch';

/**
 * Elasticsearch sink: one index per table, the row as the document, the key as `_id`, and the
 * change's position as the document's external version. Elasticsearch itself then refuses any write
 * whose version is not higher than the stored one (409), which is the stale-write guard; a delete
 * leaves a versioned tombstone for `index.gc_deletes`, which the sink sets on the indices it creates
 * to `tombstone_retention`.
 *
 * Unchanged-TOAST columns are filled in from the stored documents (stored-documents.ts). That read
 * and the write are not atomic; it relies on the pipeline writing one key from one partition in
 * order. A truncate (truncate.ts) raises the index's watermark (watermarks.ts) and deletes the
 * documents older than it.
 */
export const elasticsearchSink = defineSink({
  kind: KIND,
  configSchema,
  create(name, config: ElasticsearchSinkConfig, { logger }): Sink {
    const log = logger.child({ component: 'sink', sink: name, kind: KIND });
    const failures = sinkFailures(name);
    const bulkOptions: BulkOptions = {
      maxDocs: config.max_docs_per_request,
      maxBytes: config.max_bytes_per_request,
      concurrency: config.max_concurrent_requests,
      refresh: config.refresh,
    };
    const parts = {
      config,
      log,
      failures,
      bulkOptions,
      indexOf: createIndexNames(config.index_template),
      mappings: createIndexMappings({ config, log, fail: failures.fail }),
      watermarks: createWatermarks({ log, failures }),
    };
    const writeChanges = createChangeWriter(parts);
    const truncate = createTruncate(parts);
    const gate = new ExclusiveGate();
    let client: Client | undefined;

    return {
      name,
      kind: KIND,
      async start() {
        if (client) return;
        client = await connect(name, config, log);
      },
      async write(batch) {
        const es = client;
        if (!es) throw new SinkError(name, 'write before start', { code: 'NOT_STARTED', retriable: false });
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
