import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { errorMessage, type ErrorStage } from '../errors.ts';
import { once } from '../sink/sink.ts';
import {
  DeadLetterError,
  selectEntries,
  type DeadLetter,
  type DeadLetterEntry,
  type DeadLetterQueue,
  type DeadLetterStatus,
} from './dead-letter-queue.ts';

export interface BullmqDeadLetterOptions {
  readonly queue: string;
  readonly prefix: string;
  readonly url: string;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
  readonly connectTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * Job data of an entry. Bytes are base64 (job data is JSON); a null key or value stays null. The
 * status is part of the data: nothing consumes the queue, so jobs stay where they were added.
 */
interface JobData {
  readonly v: 1;
  readonly key: string | null;
  readonly value: string | null;
  readonly headers: Record<string, string | null>;
  readonly context: {
    readonly topic: string;
    readonly partition: number;
    readonly offset: string;
    readonly timestamp: number;
    readonly stage: ErrorStage;
    readonly sink: string | null;
    readonly table: string | null;
    readonly errorClass: string;
    readonly errorCode: string;
    readonly errorMessage: string;
    readonly errorStack: string | null;
    readonly attempts: number;
    readonly firstFailureAt: number;
    readonly lastFailureAt: number;
  };
  readonly status: DeadLetterStatus;
  readonly statusAt: number | null;
}

const JOB_NAME = 'dead-letter';
const PAGE = 500;

const b64 = (b: Buffer | null | undefined): string | null => (b ? b.toString('base64') : null);
const bytes = (s: string | null | undefined): Buffer | null => (typeof s === 'string' ? Buffer.from(s, 'base64') : null);

function toData(letter: DeadLetter): JobData {
  const c = letter.context;
  return {
    v: 1,
    key: b64(letter.key),
    value: b64(letter.value),
    headers: Object.fromEntries(Object.entries(letter.headers).map(([k, v]) => [k, b64(v)])),
    context: { ...c, sink: c.sink ?? null, table: c.table ?? null, errorStack: c.errorStack ?? null },
    status: 'open',
    statusAt: null,
  };
}

function toEntry(job: Job<JobData>): DeadLetterEntry | undefined {
  const d = job.data;
  if (job.id === undefined || d?.v !== 1) return undefined;
  return {
    id: job.id,
    key: bytes(d.key),
    value: bytes(d.value),
    headers: Object.fromEntries(Object.entries(d.headers).map(([k, v]) => [k, bytes(v) ?? undefined])),
    context: {
      ...d.context,
      sink: d.context.sink ?? undefined,
      table: d.context.table ?? undefined,
      errorStack: d.context.errorStack ?? undefined,
    },
    status: d.status,
    storedAt: job.timestamp,
    statusAt: d.statusAt ?? undefined,
  };
}

/** Redis errors are transport errors here (the scripts are BullMQ's): worth retrying. */
function unavailable(err: unknown, what: string): DeadLetterError {
  return new DeadLetterError(`${what}: ${errorMessage(err)}`, { code: 'REDIS_UNAVAILABLE', retriable: true, cause: err });
}

/**
 * The BullMQ backend: one job per entry, id = the job id. `add` resolves after Redis ran the
 * script; how durable that is follows the server's persistence (appendonly, appendfsync).
 */
export function createBullmqDeadLetterQueue(options: BullmqDeadLetterOptions): DeadLetterQueue {
  const log = options.logger.child({ component: 'dlq', kind: 'bullmq', queue: options.queue });
  let redis: Redis | undefined;
  let queue: Queue<JobData> | undefined;

  const started = (): Queue<JobData> => {
    if (!queue) throw new DeadLetterError('used before start', { code: 'NOT_STARTED', retriable: false });
    return queue;
  };

  async function job(id: string): Promise<Job<JobData> | undefined> {
    try {
      return await started().getJob(id);
    } catch (err) {
      if (err instanceof DeadLetterError) throw err;
      throw unavailable(err, `cannot read job ${id}`);
    }
  }

  return {
    kind: 'bullmq',
    target: `${options.prefix}:${options.queue}`,
    async start() {
      if (queue) return;
      const client = new Redis(options.url, {
        ...(options.username ? { username: options.username } : {}),
        ...(options.password ? { password: options.password } : {}),
        ...(options.tls ? { tls: {} } : {}),
        connectTimeout: options.connectTimeoutMs,
        lazyConnect: true,
        // Fail fast while Redis is away: the pipeline's retrier waits, with backoff and abort.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
      });
      client.on('error', (err: unknown) => log.warn({ err }, 'redis connection error'));
      try {
        await client.connect();
      } catch (err) {
        client.disconnect();
        throw unavailable(err, `cannot connect to ${options.url.replace(/\/\/[^@/]*@/, '//')}`);
      }
      redis = client;
      queue = new Queue<JobData>(options.queue, { connection: client, prefix: options.prefix });
      await queue.waitUntilReady();
      log.info('dead-letter queue ready');
    },
    async put(letter) {
      const q = started();
      try {
        const added = await q.add(JOB_NAME, toData(letter), { removeOnComplete: false, removeOnFail: false });
        if (added.id === undefined) throw new Error('no job id');
        return added.id;
      } catch (err) {
        throw unavailable(err, `cannot add to queue ${options.queue}`);
      }
    },
    async list(filter = {}) {
      const q = started();
      const entries = new Map<string, DeadLetterEntry>();
      try {
        // Pages apply per job state; once every state returned less than a page, all were seen.
        for (let start = 0; ; start += PAGE) {
          const jobs = await q.getJobs(undefined, start, start + PAGE - 1, true);
          for (const j of jobs) {
            const e = toEntry(j);
            if (e) entries.set(e.id, e);
          }
          if (jobs.length < PAGE) break;
        }
      } catch (err) {
        throw unavailable(err, `cannot list queue ${options.queue}`);
      }
      return selectEntries(entries.values(), filter);
    },
    async get(id) {
      const j = await job(id);
      return j ? toEntry(j) : undefined;
    },
    async mark(id, status) {
      const j = await job(id);
      if (!j || !toEntry(j)) {
        throw new DeadLetterError(`no entry ${id} in queue ${options.queue}`, { code: 'UNKNOWN_ENTRY', retriable: false });
      }
      try {
        await j.updateData({ ...j.data, status, statusAt: Date.now() });
      } catch (err) {
        throw unavailable(err, `cannot update job ${id}`);
      }
    },
    close: once(async () => {
      const results = await Promise.allSettled([queue?.close()]);
      redis?.disconnect();
      queue = undefined;
      redis = undefined;
      for (const r of results) if (r.status === 'rejected') log.warn({ err: r.reason }, 'dead-letter queue close failed');
    }),
  };
}
