import { createReadStream } from 'node:fs';
import { Command } from 'commander';
import { loadConfig } from '../config/load.ts';
import { ConfigError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { startService } from '../service.ts';
import { runDecode } from './decode-command.ts';
import { addDryRunOptions, runDryRunCommand } from './dry-run-command.ts';
import { registerDlqCommands } from './dlq-command.ts';
import { registerOffsetsCommand } from './offsets-command.ts';
import { startProgress } from './progress.ts';
import { registerReplayCommand } from './replay-command.ts';
import { registerStatusCommand } from './status-command.ts';
import { registerViewsCommand } from './views-command.ts';
import { registerTestCommand } from './test-command.ts';
import { registerTypesCommand } from './types-command.ts';

const program = new Command()
  .name('cdc-router')
  .description('Routes Debezium change events from Kafka to Elasticsearch, Redis and PostgreSQL');

const runCommand = program
  .command('run')
  .description('consume, transform and write until stopped (SIGTERM/SIGINT: drain, commit, exit)')
  .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
  .option('--progress', 'print a progress line every 2 s')
  .action(async (opts: { config: string; progress?: boolean; dryRun?: boolean }) => {
    if (opts.dryRun) return runDryRunCommand(opts);
    const config = await loadConfig(opts.config);
    const logger = createLogger({ level: config.log.level, format: config.log.format });
    for (const warning of config.warnings) logger.warn({ path: warning.path, detail: warning.message }, 'config warning');
    const service = await startService(config, { logger });
    if (opts.progress) startProgress(service.events, process.stdout, service.metrics?.url);
    // A consumer kafkajs will not restart leaves a process that consumes nothing: exit non-zero so
    // that the supervisor restarts it (nothing unacknowledged was committed).
    service.consumer.onFatal((err) => {
      logger.fatal({ err }, 'consumer stopped for good; exiting');
      void service.stop().finally(() => {
        logger.flush();
        process.exit(1);
      });
    });
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        // Nothing unacknowledged was ever committed, so leaving now loses nothing: it is redelivered.
        logger.warn({ signal }, 'second signal: exiting at once');
        logger.flush();
        process.exit(130);
      }
      logger.info({ signal }, 'shutting down');
      service
        .stop()
        .then(() => {
          logger.flush();
          process.exit(0);
        })
        .catch((err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          logger.flush();
          process.exit(1);
        });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
addDryRunOptions(runCommand);

program
  .command('validate')
  .description('check a config file; prints every problem with its path')
  .argument('<file>', 'config file')
  .action(async (file: string) => {
    const config = await loadConfig(file);
    for (const warning of config.warnings) console.error(`${file}: warning: ${warning.path}: ${warning.message}`);
    console.log(
      `${file}: ok (${config.sinks.length} sink(s), ${config.routes.length} route(s), topics: ${
        config.kafka.topics?.join(', ') ?? `/${config.kafka.topic_pattern}/`
      })`,
    );
  });

program
  .command('decode')
  .description('decode Kafka messages given as JSON lines ({"key","value","topic"?,"partition"?,"offset"?}) from a file or stdin')
  .argument('[file]', 'input file; stdin when absent or "-"')
  .action(async (file?: string) => {
    const input = file && file !== '-' ? createReadStream(file) : process.stdin;
    process.exitCode = await runDecode(input, process.stdout, process.stderr);
  });

registerReplayCommand(program);
registerOffsetsCommand(program);

registerDlqCommands(program);
registerStatusCommand(program);
registerViewsCommand(program);
registerTestCommand(program);
registerTypesCommand(program);

program.parseAsync().catch((err: unknown) => {
  if (err instanceof ConfigError) console.error(err.message);
  else console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(2);
});
