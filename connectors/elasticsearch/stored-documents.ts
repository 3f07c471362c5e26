import type { Client } from '@elastic/elasticsearch';
import { isUnavailable, type Row } from '../../src/model/change-event.ts';
import type { SinkFailures } from './failures.ts';

/**
 * Unchanged-TOAST columns: a bulk `update` cannot carry an external version and the cluster may have
 * no scripting, so the sink reads the stored documents of such changes (one realtime mget), fills
 * the columns in and indexes the full document with the change's version.
 */

/** A document to read: whose result it is (`slot`), and where it lives. */
export interface DocumentRef {
  readonly slot: number;
  readonly index: string;
  readonly id: string;
}

/** Whether some columns of the row are the unchanged-TOAST marker. */
export function hasUnavailable(row: Readonly<Row>): boolean {
  for (const k in row) if (isUnavailable(row[k])) return true;
  return false;
}

/**
 * The row with its unavailable columns taken from the stored document. A null-prototype object, so
 * that a column named `__proto__` is a column. Columns the stored document lacks are left out.
 */
export function mergeStored(after: Readonly<Row>, stored: Readonly<Row> | undefined): Row {
  const doc = Object.create(null) as Row;
  for (const [col, v] of Object.entries(after)) {
    if (!isUnavailable(v)) doc[col] = v;
    else if (stored && Object.hasOwn(stored, col)) doc[col] = stored[col];
  }
  return doc;
}

/** The stored sources of the documents, by slot, `maxDocs` per request; absent when a document is not there. */
export async function readStored(es: Client, refs: readonly DocumentRef[], maxDocs: number, failures: SinkFailures): Promise<Map<number, Row>> {
  const stored = new Map<number, Row>();
  for (let start = 0; start < refs.length; start += maxDocs) {
    const part = refs.slice(start, start + maxDocs);
    let res;
    try {
      res = await es.mget<Row>({ docs: part.map((p) => ({ _index: p.index, _id: p.id })), realtime: true });
    } catch (err) {
      throw failures.thrown(err, 'cannot read stored documents for unchanged-TOAST columns');
    }
    res.docs.forEach((doc, i) => {
      // A missing index or document has nothing to carry: the column is left out.
      if ('found' in doc && doc.found && doc._source) stored.set(part[i]!.slot, doc._source);
    });
  }
  return stored;
}
