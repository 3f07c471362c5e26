import type { Client } from '@elastic/elasticsearch';
import type { ChangeEvent, TableId } from '../../src/model/change-event.ts';
import { positionToVersion } from '../../src/model/position.ts';
import { rowJson } from '../../src/model/serialize.ts';
import { OK, type SinkResult } from '../../src/sink/sink.ts';
import { permanent, type Failure } from '../failure.ts';
import { deleteAction, indexAction, sendBulk, type BulkAction, type BulkOptions } from './bulk.ts';
import type { ElasticsearchSinkConfig } from './config.ts';
import type { SinkFailures } from './failures.ts';
import type { IndexMappings } from './index-mappings.ts';
import { documentId, type IndexName } from './naming.ts';
import { hasUnavailable, mergeStored, readStored } from './stored-documents.ts';
import type { Watermarks } from './watermarks.ts';

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

export interface ChangeWriterOptions {
  readonly config: ElasticsearchSinkConfig;
  readonly failures: SinkFailures;
  readonly mappings: IndexMappings;
  readonly watermarks: Watermarks;
  readonly indexOf: (table: TableId) => IndexName;
  readonly bulkOptions: BulkOptions;
}

/**
 * Writes a run of inserts, updates and deletes: each change an `index` or `delete` action with the
 * change's position as external version, results per change (a 409 is a stale write: ok).
 */
export function createChangeWriter(options: ChangeWriterOptions): (es: Client, events: readonly ChangeEvent[]) => Promise<SinkResult[]> {
  const { config, failures, mappings, watermarks, indexOf, bulkOptions } = options;

  /** The changes that can become actions; the others' failures go into `results`. */
  function prepare(events: readonly ChangeEvent[], results: SinkResult[]): Prepared[] {
    const prepared: Prepared[] = [];
    events.forEach((event, slot) => {
      const index = indexOf(event.table).name;
      const refuse = (failure: Failure) => (results[slot] = failures.forRecord(event, `index ${index}`, failure));
      const version = positionToVersion(event.position);
      if (version === undefined) {
        refuse(permanent('POSITION_NOT_A_VERSION', `position [${event.position.parts.join(', ')}] has no 64-bit form for external versioning`));
        return;
      }
      const id = documentId(event.key);
      if ('error' in id) {
        refuse(permanent('BAD_DOCUMENT_ID', id.error));
        return;
      }
      if (event.op !== 'd' && !event.after) {
        refuse(permanent('NO_ROW', `a '${event.op}' change without a row`));
        return;
      }
      const partial = event.op !== 'd' && hasUnavailable(event.after!);
      prepared.push({ slot, event, index, id: id.id, version, partial });
    });
    return prepared;
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

  /**
   * Changes not newer than their index's last truncate are stale (ok, not written): a truncate may
   * be written before older changes of another partition, or replayed before them.
   */
  async function newerThanTruncates(es: Client, writable: readonly Prepared[]): Promise<readonly Prepared[]> {
    if (config.truncate !== 'apply') return writable;
    const indices = [...new Set(writable.map((p) => p.index))];
    const marks = new Map(await Promise.all(indices.map(async (i) => [i, await watermarks.of(es, i)] as const)));
    return writable.filter((p) => {
      const mark = marks.get(p.index);
      return mark === undefined || p.version > mark;
    });
  }

  /** Sends the actions of `live`; the failures of single actions go into `results`. */
  async function send(es: Client, live: readonly Prepared[], results: SinkResult[]): Promise<void> {
    const partial = live.filter((p) => p.partial);
    const stored = partial.length > 0 ? await readStored(es, partial, config.max_docs_per_request, failures) : undefined;

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
          results[p.slot] = failures.forRecord(p.event, `index ${p.index}`, permanent('NOT_SERIALIZABLE', String(err)), err);
          continue;
        }
        yield indexAction(p.slot, indexJson, p.id, p.version, source);
      }
    }

    let failed: Map<number, Failure>;
    try {
      failed = await sendBulk(es, actions(), bulkOptions);
    } catch (err) {
      throw failures.thrown(err, `bulk write of ${live.length} changes failed`);
    }
    if (failed.size > 0) {
      const bySlot = new Map(live.map((p) => [p.slot, p]));
      for (const [slot, f] of failed) {
        const p = bySlot.get(slot)!;
        results[slot] = failures.forRecord(p.event, `index ${p.index}, _id ${p.id}`, f);
      }
    }
  }

  return async (es, events) => {
    const results = new Array<SinkResult>(events.length).fill(OK);
    const prepared = prepare(events, results);
    // Indices and their mappings first (in parallel): the records of an index that cannot be created,
    // or of a schema its mapping cannot hold, fail; the others go on.
    const refused = await ensureMappings(es, prepared);
    const refusal = (p: Prepared) => refused.get(p.index)?.get(p.event.columns);
    const writable = refused.size === 0 ? prepared : prepared.filter((p) => !refusal(p));
    const live = await newerThanTruncates(es, writable);
    for (const p of prepared) {
      const f = refusal(p);
      if (f) results[p.slot] = failures.forRecord(p.event, `index ${p.index}`, f);
    }
    await send(es, live, results);
    return results;
  };
}
