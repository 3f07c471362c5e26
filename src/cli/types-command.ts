import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig, type Config } from '../config/load.ts';
import { decodingFromConfig } from '../decode/avro.ts';
import { CdcError, describeCoordinates, errorMessage } from '../errors.ts';
import { createLogger } from '../log.ts';
import type { ColumnSchema, DecodedRecord } from '../model/change-event.ts';
import { isRequestError } from './request-error.ts';
import { parseOptions } from './options.ts';
import { renderRowTypes, type TableColumns } from './row-types.ts';
import { readInThrowawayGroup, type ThrowawayReadResult } from './throwaway-read.ts';

/*
 * `cdc-router types`: TypeScript row types from the schemas of the change events on the config's
 * topics. The records go through the pipeline's own decoder (JSON with schema, or Avro through the
 * registry), so the columns typed are exactly those the decoder reports, and their types those of
 * the values it makes (see row-types.ts).
 */

const typesOptions = z.object({
  config: z.string().min(1),
  out: z.string().min(1).optional(),
  records: z
    .string()
    .regex(/^[1-9]\d*$/, 'expected a positive number of records')
    .transform((s) => Number(s))
    .default('10'),
  importFrom: z.string().min(1).default('cdc-router'),
});

export type TypesOptions = z.infer<typeof typesOptions>;

/** Whatever else the read comes across, never more than this long. */
const READ_LIMIT_MS = 120_000;

export interface CollectedSchemas {
  /** Each table's columns, from its latest record that carried a schema. */
  readonly tables: readonly TableColumns[];
  /** Tables whose records carried no schema (JsonConverter with schemas.enable=false), with a topic they were on. */
  readonly withoutSchema: ReadonlyMap<string, string>;
  /** Records the decoder refused, as "topic/partition@offset: message". */
  readonly refused: readonly string[];
  readonly read: ThrowawayReadResult;
}

/**
 * Reads the last `perPartition` records of every partition of the config's topics in a throwaway
 * group (committing nothing) and keeps, per table, the columns of its latest change event.
 */
export async function collectSchemas(config: Config, perPartition: number, signal?: AbortSignal): Promise<CollectedSchemas> {
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  const decoding = decodingFromConfig(config, logger.child({ component: 'decode' }));
  const latest = new Map<string, { columns: readonly ColumnSchema[]; timestamp: number; topic: string }>();
  const withoutSchema = new Map<string, string>();
  const refused: string[] = [];
  const abort = new AbortController();
  signal?.addEventListener('abort', () => abort.abort(), { once: true });
  try {
    const read = await readInThrowawayGroup(
      config,
      { label: 'types', start: { last: perPartition }, durationMs: READ_LIMIT_MS, stopAtEnd: true, logger, signal: abort.signal },
      async (records) => {
        // Avro schemas come from the registry before the batch is decoded, as in the pipeline.
        await decoding.prepare?.(records, abort.signal);
        for (const record of records) {
          let decoded: DecodedRecord;
          try {
            decoded = decoding.decoder.decode(record);
          } catch (err) {
            refused.push(err instanceof CdcError && err.at ? errorMessage(err) : `${describeCoordinates(record)}: ${errorMessage(err)}`);
            continue;
          }
          if (decoded.kind !== 'change' || decoded.op === 't') continue;
          const id = decoded.table.id;
          if (!decoded.columns) {
            if (!latest.has(id)) withoutSchema.set(id, record.topic);
            continue;
          }
          const seen = latest.get(id);
          if (!seen || record.timestamp >= seen.timestamp) latest.set(id, { columns: decoded.columns, timestamp: record.timestamp, topic: record.topic });
          withoutSchema.delete(id);
        }
      },
    );
    const tables = [...latest].map(([id, t]) => ({ id, columns: t.columns, topic: t.topic }));
    return { tables, withoutSchema, refused, read };
  } finally {
    logger.flush();
  }
}

export interface TypesIo {
  readonly out: { write(text: string): unknown };
  readonly err: { write(text: string): unknown };
  readonly signal?: AbortSignal;
}

/** 0 when types were written, 1 when no record on the topics carried a schema. */
export async function runTypes(config: Config, options: TypesOptions, io: TypesIo): Promise<number> {
  const found = await collectSchemas(config, options.records, io.signal);
  for (const line of found.refused) io.err.write(`types: skipped a record the decoder refuses: ${line}\n`);
  for (const [table, topic] of found.withoutSchema) {
    io.err.write(`types: ${table} (topic ${topic}): its records carry no schema (JsonConverter schemas.enable=false?), so it has no type\n`);
  }
  const { read } = found;
  if (found.tables.length === 0) {
    io.err.write(`types: no change event with a schema in the last ${options.records} record(s) of each partition of ${read.topics.join(', ')}\n`);
    return 1;
  }
  const text = renderRowTypes(found.tables, { importFrom: options.importFrom });
  if (options.out) await writeFile(options.out, text);
  else io.out.write(text);
  io.err.write(
    `types: ${found.tables.length} table(s) from ${read.records} record(s) of ${read.topics.join(', ')}${options.out ? `, written to ${options.out}` : ''}; nothing committed\n`,
  );
  return 0;
}

export function registerTypesCommand(program: Command): void {
  program
    .command('types')
    .description(
      "write TypeScript row types (an interface per table, and `Tables` for defineHandlers<Tables>()) from the schemas of the change events on the config's topics, read in a throwaway group; commits nothing",
    )
    .requiredOption('-c, --config <file>', 'config file (YAML or JSON)')
    .option('-o, --out <file>', 'write the types to this file (default: stdout)')
    .option('--records <n>', 'read the last n records of each partition', '10')
    .option('--import-from <module>', 'module the value types (Int64, Decimal, …) are imported from', 'cdc-router')
    .action(async (raw: Record<string, unknown>) => {
      try {
        const options = parseOptions(typesOptions, raw);
        const config = await loadConfig(options.config);
        process.exitCode = await runTypes(config, options, { out: process.stdout, err: process.stderr });
      } catch (err) {
        // What cannot be done as asked (bad options, a missing topic, a registry that does not answer): the message alone.
        if (!(err instanceof CdcError)) throw err;
        console.error(isRequestError(err) ? err.message : `types: ${errorMessage(err)}`);
        process.exitCode = 2;
      }
    });
}
