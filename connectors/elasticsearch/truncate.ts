import { errors, type Client } from '@elastic/elasticsearch';
import type { Logger } from 'pino';
import { SinkError } from '../../src/errors.ts';
import type { ChangeEvent, TableId } from '../../src/model/change-event.ts';
import { positionToVersion } from '../../src/model/position.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import { permanent } from '../failure.ts';
import { BulkRequestError, deleteAction, sendBulk, type BulkOptions } from './bulk.ts';
import { classify } from './classify.ts';
import type { ElasticsearchSinkConfig } from './config.ts';
import type { SinkFailures } from './failures.ts';
import type { IndexMappings } from './index-mappings.ts';
import type { IndexName } from './naming.ts';
import type { Watermarks } from './watermarks.ts';

export interface TruncateOptions {
  readonly config: ElasticsearchSinkConfig;
  readonly log: Logger;
  readonly failures: SinkFailures;
  readonly mappings: IndexMappings;
  readonly watermarks: Watermarks;
  readonly indexOf: (table: TableId) => IndexName;
  readonly bulkOptions: BulkOptions;
}

/**
 * Truncate (`apply`): record the truncate's version as the index's watermark (later writes of older
 * changes are skipped), refresh, scroll every `_id` of the index and bulk-delete them with the
 * truncate's position as version. Unlike dropping and recreating the index, this keeps the index's
 * mapping and settings, leaves tombstones so that replayed older inserts stay out, and spares
 * documents newer than the truncate (their deletes get 409).
 */
export function createTruncate(options: TruncateOptions): (es: Client, event: ChangeEvent) => Promise<SinkResult> {
  const { config, log, failures, mappings, watermarks, indexOf, bulkOptions } = options;

  /** Deletes, page by page, every document of the index with a version below `version`; a permanent failure of one delete is the result. */
  async function deleteAll(es: Client, event: ChangeEvent, index: string, indexJson: string, version: bigint, scroll: { id?: string }): Promise<SinkResult> {
    let page = await es.search({ index, scroll: '1m', size: config.max_docs_per_request, sort: ['_doc'], _source: false });
    for (;;) {
      scroll.id = page._scroll_id;
      const hits = page.hits.hits;
      if (hits.length === 0) break;
      const actions = hits.flatMap((h, i) => (h._id === undefined ? [] : [deleteAction(i, indexJson, h._id, version)]));
      const failed = (await sendBulk(es, actions, bulkOptions)).values().next().value;
      if (failed) {
        if (failed.retriable) throw new BulkRequestError(failed, { cause: undefined });
        return failures.forRecord(event, `truncate of index ${index}`, failed);
      }
      if (!scroll.id) break;
      page = await es.scroll({ scroll_id: scroll.id, scroll: '1m' });
    }
    return OK;
  }

  return async (es, event) => {
    if (config.truncate === 'ignore') return OK;
    const { name: index, json: indexJson } = indexOf(event.table);
    const where = `truncate of index ${index}`;
    const version = positionToVersion(event.position);
    if (version === undefined) {
      return failures.forRecord(event, where, permanent('POSITION_NOT_A_VERSION', `position [${event.position.parts.join(', ')}] has no 64-bit form`));
    }
    const scroll: { id?: string } = {};
    try {
      // First the watermark, so that older changes are refused from now on; an index that does not
      // exist yet is made for it (older changes may still come).
      const created = await mappings.ensure(es, index, event);
      if (created) return failures.forRecord(event, where, created);
      await watermarks.raise(es, index, version);
      // Search sees only refreshed documents; the changes written before the truncate must be among them.
      await es.indices.refresh({ index });
      const result = await deleteAll(es, event, index, indexJson, version, scroll);
      if (result.ok) log.info({ index, table: event.table.id }, 'truncate applied');
      return result;
    } catch (err) {
      if (err instanceof SinkError) throw err; // from ensureIndex: retriable, already described
      // The index went away meanwhile: nothing to truncate.
      if (err instanceof errors.ResponseError && err.statusCode === 404) return OK;
      const failure = err instanceof BulkRequestError ? err.failure : classify(err);
      if (failure.retriable) throw failures.fail(failure, where, err);
      return failures.forRecord(event, where, failure, err);
    } finally {
      if (scroll.id) {
        await es.clearScroll({ scroll_id: scroll.id }).catch((err: unknown) => {
          log.warn({ index, err: classify(err).message }, 'cannot clear scroll');
        });
      }
    }
  };
}
