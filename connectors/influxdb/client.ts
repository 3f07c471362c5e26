/**
 * The InfluxDB 1.x HTTP API (/ping, /write, /query) through Node's fetch: no client library fits
 * (see line-protocol.ts). Every failure comes out as an InfluxHttpError (the server answered) or an
 * InfluxTransportError (no answer: refused, reset, timed out), which classify.ts sorts.
 */

/** The server answered with an error status, or a query statement failed (status 200, `error` in its result). */
export class InfluxHttpError extends Error {
  override readonly name = 'InfluxHttpError';
  constructor(
    readonly status: number,
    /** InfluxDB's own message (the body's `error`), or the body text. */
    readonly serverMessage: string,
    readonly request: string,
  ) {
    super(`${request}: HTTP ${status} ${serverMessage}`);
  }
}

/** No answer: connection refused or reset, DNS, TLS, or the request timed out. */
export class InfluxTransportError extends Error {
  override readonly name = 'InfluxTransportError';
  constructor(
    message: string,
    readonly timedOut: boolean,
    options: { cause: unknown },
  ) {
    super(message, options);
  }
}

export interface InfluxClientOptions {
  readonly url: string;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly timeoutMs: number;
}

export interface WriteTarget {
  readonly database: string;
  readonly retentionPolicy: string | undefined;
  /** The /write API's precision parameter: n, u, ms or s. */
  readonly precision: string;
}

export interface InfluxClient {
  ping(): Promise<void>;
  /** Writes lines (joined by "\n"); resolves on 204. */
  write(target: WriteTarget, body: string): Promise<void>;
  /** Runs InfluxQL statements (POST /query); rejects with the first statement's error. */
  query(q: string, database?: string): Promise<QueryResult[]>;
}

export interface QueryResult {
  readonly statement_id?: number;
  readonly error?: string;
  readonly series?: readonly { name: string; columns: string[]; values?: unknown[][]; tags?: Record<string, string> }[];
}

function causeText(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  const detail = cause?.code ?? cause?.message;
  return detail ? `${String(err)} (${detail})` : String(err);
}

export function createInfluxClient(options: InfluxClientOptions): InfluxClient {
  const base = options.url.replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  if (options.username !== undefined) {
    headers['authorization'] = `Basic ${Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64')}`;
  }

  async function request(method: 'GET' | 'POST', path: string, params: URLSearchParams, body?: string): Promise<Response> {
    const what = `${method} ${path}`;
    try {
      return await fetch(`${base}${path}?${params.toString()}`, {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'text/plain; charset=utf-8' },
        body,
        signal: AbortSignal.timeout(options.timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof DOMException && (err.name === 'TimeoutError' || err.name === 'AbortError');
      throw new InfluxTransportError(timedOut ? `${what}: no answer within ${options.timeoutMs} ms` : `${what}: ${causeText(err)}`, timedOut, { cause: err });
    }
  }

  async function failure(res: Response, what: string): Promise<InfluxHttpError> {
    const text = await res.text().catch(() => '');
    let message = text.trim();
    try {
      const parsed = JSON.parse(text) as { error?: unknown };
      if (typeof parsed.error === 'string') message = parsed.error;
    } catch {
      // Not JSON (a proxy's page): the text itself.
    }
    return new InfluxHttpError(res.status, message || res.statusText, what);
  }

  return {
    async ping() {
      const res = await request('GET', '/ping', new URLSearchParams());
      await res.arrayBuffer().catch(() => undefined);
      if (res.status !== 204 && res.status !== 200) throw await failure(res, 'GET /ping');
    },
    async write(target, body) {
      const params = new URLSearchParams({ db: target.database, precision: target.precision });
      if (target.retentionPolicy !== undefined) params.set('rp', target.retentionPolicy);
      const res = await request('POST', '/write', params, body);
      if (res.status === 204) {
        await res.arrayBuffer().catch(() => undefined);
        return;
      }
      throw await failure(res, 'POST /write');
    },
    async query(q, database) {
      const params = new URLSearchParams({ q });
      if (database !== undefined) params.set('db', database);
      const res = await request('POST', '/query', params);
      if (res.status !== 200) throw await failure(res, 'POST /query');
      const body = (await res.json()) as { results?: QueryResult[]; error?: string };
      if (body.error) throw new InfluxHttpError(200, body.error, 'POST /query');
      const results = body.results ?? [];
      const failed = results.find((r) => r.error !== undefined);
      if (failed) throw new InfluxHttpError(200, failed.error!, `query ${q}`);
      return results;
    },
  };
}

/** An InfluxQL identifier: double-quoted, `"` and `\` escaped. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/[\\"]/g, '\\$&')}"`;
}

/** An InfluxQL string literal: single-quoted, `'` and `\` escaped. */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/[\\']/g, '\\$&')}'`;
}
