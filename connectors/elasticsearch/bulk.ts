import { setImmediate } from 'node:timers/promises';
import type { Client } from '@elastic/elasticsearch';
import type { Failure } from '../failure.ts';
import { classify, classifyItem } from './classify.ts';

/** One bulk action with its NDJSON lines; `slot` says whose result it is. */
export interface BulkAction {
  readonly slot: number;
  readonly kind: 'index' | 'delete';
  readonly ndjson: string;
}

/**
 * Action lines are built as strings rather than objects for the client to serialize: versions are
 * 64-bit (positions), and JSON.stringify of a number above 2^53 would round it, which would let an
 * older write pass the guard or refuse a newer one. Building the string is also cheaper than an
 * object per action.
 */
export function indexAction(slot: number, indexJson: string, id: string, version: bigint, source: string): BulkAction {
  return {
    slot,
    kind: 'index',
    ndjson: `{"index":{"_index":${indexJson},"_id":${JSON.stringify(id)},"version":${version},"version_type":"external"}}\n${source}\n`,
  };
}

export function deleteAction(slot: number, indexJson: string, id: string, version: bigint): BulkAction {
  return {
    slot,
    kind: 'delete',
    ndjson: `{"delete":{"_index":${indexJson},"_id":${JSON.stringify(id)},"version":${version},"version_type":"external"}}\n`,
  };
}

/** A whole request failed; `failure` says whether it is retriable. */
export class BulkRequestError extends Error {
  constructor(
    readonly failure: Failure,
    options: { cause: unknown },
  ) {
    super(failure.message, options);
    this.name = 'BulkRequestError';
  }
}

interface BulkResponse {
  readonly errors?: boolean;
  readonly items?: readonly Record<string, { readonly status?: number; readonly error?: unknown } | undefined>[];
}

export interface BulkOptions {
  readonly maxDocs: number;
  readonly maxBytes: number;
  readonly concurrency: number;
  readonly refresh: 'false' | 'true' | 'wait_for';
}

/** Only what classifying the items needs: a 5000-item answer stays small. */
const FILTER_PATH = 'errors,items.*.status,items.*.error';

/**
 * Sends actions as bulk requests of at most `maxDocs` actions and `maxBytes` bytes (one action may
 * exceed it alone), at most `concurrency` in flight, and returns the failed actions' failures by
 * slot. `actions` is consumed lazily: the next request is built while the previous one is on the
 * wire, so serializing and indexing overlap. Throws BulkRequestError when a request failed retriably
 * (or in a way no single record explains, such as 401). A request refused as a whole with 400 or 413
 * is bisected until the offending action is alone, so the others still go through.
 */
export async function sendBulk(client: Client, actions: Iterable<BulkAction>, options: BulkOptions): Promise<Map<number, Failure>> {
  const failures = new Map<number, Failure>();
  const inflight = new Set<Promise<void>>();
  let failed: { error: unknown } | undefined;
  const launch = async (chunk: readonly BulkAction[]) => {
    while (inflight.size >= options.concurrency) await Promise.race(inflight);
    if (failed) return;
    const p: Promise<void> = sendChunk(client, chunk, options.refresh)
      .then((results) => results.forEach((f, i) => f && failures.set(chunk[i]!.slot, f)))
      .catch((error: unknown) => void (failed ??= { error }))
      .finally(() => inflight.delete(p));
    inflight.add(p);
    // Let the request reach the socket before building the next one synchronously.
    await setImmediate();
  };
  let chunk: BulkAction[] = [];
  let bytes = 0;
  for (const a of actions) {
    if (failed) break;
    const size = Buffer.byteLength(a.ndjson);
    if (chunk.length > 0 && (chunk.length >= options.maxDocs || bytes + size > options.maxBytes)) {
      await launch(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(a);
    bytes += size;
  }
  if (chunk.length > 0 && !failed) await launch(chunk);
  await Promise.all(inflight);
  if (failed) throw failed.error;
  return failures;
}

async function sendChunk(client: Client, chunk: readonly BulkAction[], refresh: BulkOptions['refresh']): Promise<(Failure | undefined)[]> {
  let response: BulkResponse;
  try {
    response = await client.transport.request<BulkResponse>({
      method: 'POST',
      path: '/_bulk',
      bulkBody: chunk.map((a) => a.ndjson).join(''),
      querystring: { filter_path: FILTER_PATH, refresh },
    });
  } catch (err) {
    const failure = classify(err);
    const recordShaped = failure.status === 400 || failure.status === 413;
    if (failure.retriable || !recordShaped) throw new BulkRequestError(failure, { cause: err });
    if (chunk.length === 1) return [failure];
    const half = Math.ceil(chunk.length / 2);
    const left = await sendChunk(client, chunk.slice(0, half), refresh);
    const right = await sendChunk(client, chunk.slice(half), refresh);
    return [...left, ...right];
  }
  if (response.errors === false) return chunk.map(() => undefined);
  const items = response.items;
  if (!items || items.length !== chunk.length) {
    const failure: Failure = {
      retriable: true,
      code: 'ES_BAD_RESPONSE',
      message: `bulk answered ${items?.length ?? 'no'} items for ${chunk.length} actions`,
      status: undefined,
    };
    throw new BulkRequestError(failure, { cause: undefined });
  }
  return chunk.map((action, i) => {
    const result = items[i]?.[action.kind];
    if (typeof result?.status !== 'number') {
      return { retriable: true, code: 'ES_BAD_RESPONSE', message: 'bulk answered no status for this action', status: undefined };
    }
    return classifyItem(action.kind, result.status, result.error);
  });
}
