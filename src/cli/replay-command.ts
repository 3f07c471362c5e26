import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { isRequestError } from './request-error.ts';
import { offsetOption, oneOf, parseOptions, partitionOption, timestampOption } from './options.ts';
import { formatReplaySummary } from './report.ts';
import { replayExitCode, runReplay, type ReplayRequest } from '../replay/replay.ts';

const replayOptions = z
  .object({
    config: z.string().min(1),
    topic: z.string().min(1),
    partition: partitionOption.optional(),
    fromOffset: offsetOption.optional(),
    fromTimestamp: timestampOption.optional(),
    untilOffset: offsetOption.optional(),
    untilTimestamp: timestampOption.optional(),
    dryRun: z.boolean().default(false),
  })
  .superRefine(oneOf(['fromOffset', 'fromTimestamp']))
  .superRefine(oneOf(['untilOffset', 'untilTimestamp'], true));

function toRequest(o: z.infer<typeof replayOptions>): ReplayRequest {
  const from: ReplayRequest['from'] =
    o.fromOffset !== undefined ? { kind: 'offset', offset: o.fromOffset } : { kind: 'timestamp', ms: o.fromTimestamp! };
  const until: ReplayRequest['until'] =
    o.untilOffset !== undefined
      ? { kind: 'offset', offset: o.untilOffset }
      : o.untilTimestamp !== undefined
        ? { kind: 'timestamp', ms: o.untilTimestamp }
        : undefined;
  return { topic: o.topic, partition: o.partition, from, until, dryRun: o.dryRun };
}

export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description(
      'replay an offset range of a topic through the configured pipeline, in a throwaway consumer group (the live group is not touched); stops at the end of the range',
    )
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .requiredOption('--topic <topic>', 'topic to replay')
    .option('--partition <n>', 'only this partition (default: all)')
    .option('--from-offset <n>', 'first offset to replay (inclusive)')
    .option('--from-timestamp <iso>', 'first record at or after this time')
    .option('--until-offset <n>', 'stop before this offset (default: the end offsets when the replay starts)')
    .option('--until-timestamp <iso>', 'stop before the first record at or after this time')
    .option('--dry-run', 'print the offset ranges, read nothing')
    .action(async (raw: Record<string, unknown>) => {
      try {
        const options = parseOptions(replayOptions, raw);
        const config = await loadConfig(options.config);
        const logger = createLogger({ level: config.log.level, format: config.log.format });
        const abort = new AbortController();
        let signals = 0;
        const onSignal = (signal: NodeJS.Signals) => {
          // Nothing of the live group depends on a replay: leaving at once loses nothing.
          if (++signals > 1) process.exit(130);
          logger.info({ signal }, 'replay interrupted: stopping');
          abort.abort();
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        try {
          const summary = await runReplay(config, toRequest(options), { logger, signal: abort.signal });
          process.stdout.write(formatReplaySummary(summary));
          process.exitCode = replayExitCode(summary);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          logger.flush();
        }
      } catch (err) {
        // What the operator asked wrong: the message alone. Anything else goes up to main (stack, exit 2).
        if (!isRequestError(err)) throw err;
        console.error(err.message);
        process.exitCode = 2;
      }
    });
}
