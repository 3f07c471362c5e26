import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig, type Config } from '../config/load.ts';
import { createLogger, type Logger } from '../log.ts';
import { isRequestError } from './request-error.ts';
import { connectGroupAdmin, type GroupAdmin } from '../consume/group-admin.ts';
import { applyReset, groupOffsets, planReset, type ResetRequest } from '../replay/group-offsets.ts';
import { offsetOption, oneOf, parseOptions, partitionOption, timestampOption } from './options.ts';
import { formatGroupOffsets, formatResetPlan, groupOffsetsJson } from './report.ts';

const showOptions = z.object({ config: z.string().min(1), json: z.boolean().default(false) });

const resetOptions = z
  .object({
    config: z.string().min(1),
    topic: z.string().min(1),
    partition: partitionOption.optional(),
    toOffset: offsetOption.optional(),
    toTimestamp: timestampOption.optional(),
    toEarliest: z.boolean().optional(),
    toLatest: z.boolean().optional(),
    dryRun: z.boolean().default(false),
  })
  .superRefine(oneOf(['toOffset', 'toTimestamp', 'toEarliest', 'toLatest']));

function toRequest(o: z.infer<typeof resetOptions>): ResetRequest {
  const to: ResetRequest['to'] =
    o.toOffset !== undefined
      ? { kind: 'offset', offset: o.toOffset }
      : o.toTimestamp !== undefined
        ? { kind: 'timestamp', ms: o.toTimestamp }
        : o.toEarliest
          ? { kind: 'earliest' }
          : { kind: 'latest' };
  return { topic: o.topic, partition: o.partition, to };
}

/** Loads the config, connects an admin client, runs `fn`, and always disconnects. */
async function withAdmin(configFile: string, fn: (admin: GroupAdmin, config: Config, logger: Logger) => Promise<void>): Promise<void> {
  const config = await loadConfig(configFile);
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  const admin = await connectGroupAdmin(config.kafka, logger);
  try {
    await fn(admin, config, logger);
  } finally {
    await admin.close();
    logger.flush();
  }
}

/** What the operator asked wrong (or a live group): the message alone, exit 2; anything else goes up. */
async function guarded(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!isRequestError(err)) throw err;
    console.error(err.message);
    process.exitCode = 2;
  }
}

export function registerOffsetsCommand(program: Command): void {
  const offsets = program.command('offsets').description("inspect or move the consumer group's committed offsets");

  offsets
    .command('show')
    .description('committed offset, end offset and lag per partition; the group state and members')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON); its kafka.group_id is the group')
    .option('--json', 'one JSON object on stdout')
    .action((raw: Record<string, unknown>) =>
      guarded(async () => {
        const o = parseOptions(showOptions, raw);
        await withAdmin(o.config, async (admin, config) => {
          const result = await groupOffsets(admin, config.kafka);
          process.stdout.write(o.json ? groupOffsetsJson(result) : formatGroupOffsets(result));
        });
      }),
    );

  offsets
    .command('reset')
    .description('set the group offsets of a topic; refused (exit 2) while the group has active members')
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON); its kafka.group_id is the group')
    .requiredOption('--topic <topic>', 'topic whose offsets to set')
    .option('--partition <n>', 'only this partition (default: all)')
    .option('--to-offset <n>', 'this offset (kept within the partition: first..end)')
    .option('--to-timestamp <iso>', 'the first record at or after this time (the end if none)')
    .option('--to-earliest', 'the first offset still in the partition')
    .option('--to-latest', 'the end offset: skip everything not yet consumed')
    .option('--dry-run', 'print old -> new, change nothing')
    .action((raw: Record<string, unknown>) =>
      guarded(async () => {
        const o = parseOptions(resetOptions, raw);
        await withAdmin(o.config, async (admin, config) => {
          const plan = await planReset(admin, config.kafka.group_id, toRequest(o));
          if (!o.dryRun) await applyReset(admin, plan);
          process.stdout.write(formatResetPlan(plan, !o.dryRun));
        });
      }),
    );
}
