import type { Logger } from 'pino';
import { splitPartitionKey } from './state-store.ts';

/** Records still to read per partition of a view's input topics and of the topics it has read, by partitionKey; undefined when unknown. */
export type InputLags = (topicsRead: readonly string[]) => Promise<ReadonlyMap<string, bigint | undefined>>;

/**
 * Stands for every input partition while their lags are unknown (the lookup failed or is overdue):
 * no clock has this key, so, like a partition not read yet, it holds the watermark back.
 */
export const UNKNOWN_INPUTS = '\u0000input lags unknown';

/** How long a lookup's answer is used before the next call starts a new one: the relay tick. */
export const LAG_TTL_MS = 2_000;
/** A lookup not answered by then counts as failed (the watermark holds); the first call waits no longer. */
export const LAG_TIMEOUT_MS = 2_000;

/**
 * The input partitions of a windowed view with records waiting, for watermarkOf. The Kafka admin is
 * asked in the background, one lookup at a time and at most once per `ttlMs`: a write, tick or
 * heartbeat takes the last answer and never waits for the admin, except before the first answer
 * (then for at most `timeoutMs`). A lookup that fails or takes longer than `timeoutMs` makes the
 * answer UNKNOWN_INPUTS until one succeeds: correctness first, the watermark holds, writes go on.
 */
export interface UnreadInputs {
  waiting(topicsRead: ReadonlySet<string>): Promise<ReadonlySet<string>>;
  /** No lookup starts after this. */
  close(): void;
}

interface Answer {
  readonly at: number;
  readonly topics: ReadonlySet<string>;
  readonly waiting: ReadonlySet<string>;
}

const HOLD: ReadonlySet<string> = new Set([UNKNOWN_INPUTS]);

export function cachedUnreadInputs(lags: InputLags, options: { logger: Logger; ttlMs?: number; timeoutMs?: number }): UnreadInputs {
  const ttlMs = options.ttlMs ?? LAG_TTL_MS;
  const timeoutMs = options.timeoutMs ?? LAG_TIMEOUT_MS;
  let answer: Answer | undefined;
  let lookup: Promise<void> | undefined;
  let failing = false;
  let closed = false;

  const failed = (at: number, topics: ReadonlySet<string>, err: unknown) => {
    answer = { at, topics, waiting: HOLD };
    if (!failing) options.logger.warn({ err }, 'view input lags unknown: the watermark holds until a lookup succeeds');
    failing = true;
  };

  function start(topicsRead: ReadonlySet<string>): Promise<void> {
    const at = Date.now();
    const topics = new Set(topicsRead);
    let done = false;
    // The lookup goes on past the timeout (kafkajs bounds it); no second one starts meanwhile.
    const overdue = setTimeout(() => {
      if (!done) failed(at, topics, new Error(`no answer from the Kafka admin within ${timeoutMs} ms`));
    }, timeoutMs);
    overdue.unref();
    const run = lags([...topics])
      .then((found) => {
        // The topics asked about: those read, and the configured inputs the answer covers.
        for (const p of found.keys()) topics.add(splitPartitionKey(p).topic);
        answer = { at, topics, waiting: new Set([...found].filter(([, lag]) => lag !== undefined && lag > 0n).map(([p]) => p)) };
        if (failing) options.logger.info('view input lags known again');
        failing = false;
      })
      .catch((err: unknown) => failed(at, topics, err))
      .finally(() => {
        done = true;
        clearTimeout(overdue);
        lookup = undefined;
      });
    lookup = run;
    return run;
  }

  const stale = (topicsRead: ReadonlySet<string>) =>
    !answer || Date.now() - answer.at >= ttlMs || [...topicsRead].some((t) => !answer!.topics.has(t));

  return {
    async waiting(topicsRead) {
      if (!closed && !lookup && stale(topicsRead)) void start(topicsRead);
      if (answer) return answer.waiting;
      if (lookup) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([lookup, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
        clearTimeout(timer);
      }
      // Set meanwhile by the lookup (the compiler cannot see that through the await).
      return (answer as Answer | undefined)?.waiting ?? HOLD;
    },
    close() {
      closed = true;
    },
  };
}
