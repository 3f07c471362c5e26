import { loadConfig, type Config } from '../config/load.ts';
import { decodingFromConfig } from '../decode/avro.ts';
import type { ErrorStage } from '../errors.ts';
import type { HandlersModule } from '../handler.ts';
import type { ChangeEvent, RawRecord } from '../model/change-event.ts';
import type { TypedChangeEvent } from '../model/typed-event.ts';
import { prepareRecord } from '../pipeline/prepare-record.ts';
import { createRouter } from '../route/router.ts';
import type { Sink } from '../sink/sink.ts';
import { compileChain } from '../transform/chain.ts';
import { createMemorySink, type MemorySink, type MemoryWrite } from './memory-sink.ts';

/**
 * Runs a handlers module's transforms for each event's table (the handlers of `"*"` for tables
 * without their own), in order: what the module adds to a route, without the config's transforms.
 * One result per event: the event the sinks would get, or null when a transform dropped it. A
 * transform that throws throws a TransformError naming it.
 */
export function runHandlers(module: HandlersModule, events: readonly TypedChangeEvent<object>[]): (ChangeEvent | null)[] {
  const chains = new Map<string, (event: ChangeEvent) => ChangeEvent | null>();
  const chainFor = (table: string) => {
    let chain = chains.get(table);
    if (!chain) {
      const own = (module.handlers ?? []).filter((h) => h.table === table);
      const handlers = own.length > 0 ? own : (module.handlers ?? []).filter((h) => h.table === '*');
      chain = compileChain(
        handlers.flatMap((h, i) => (h.transforms ?? []).map((apply, j) => ({ name: `${h.table}#handler${i}.${j}:${apply.name || 'anonymous'}`, apply }))),
      );
      chains.set(table, chain);
    }
    return chain;
  };
  return events.map((event) => chainFor(event.table.id)(event as unknown as ChangeEvent));
}

/** A Kafka record given to the test pipeline; key and value as their bytes' text (or null). */
export interface TestRecord {
  readonly topic: string;
  readonly key: string | Buffer | null;
  readonly value: string | Buffer | null;
  readonly partition?: number;
  /** Default: the record's index among those of its topic and partition in this run. */
  readonly offset?: number | string;
  readonly timestamp?: number;
  readonly headers?: Readonly<Record<string, Buffer | undefined>>;
}

/** A record the live service would send to the dead-letter queue (or halt its partition at). */
export interface DeadLetter {
  /** Index of the record in the run's input. */
  readonly index: number;
  readonly stage: ErrorStage;
  readonly code: string;
  readonly message: string;
  readonly table: string | undefined;
}

export interface PipelineRun {
  /** Each configured sink's writes, by sink name. */
  readonly writes: ReadonlyMap<string, readonly MemoryWrite[]>;
  readonly deadLetters: readonly DeadLetter[];
  /** Records that reached no sink: tombstones, heartbeats, transaction markers, unrouted or filtered. */
  readonly skipped: readonly { readonly index: number; readonly reason: string }[];
}

export interface TestPipeline {
  /** One memory sink per sink of the config, under its name. */
  readonly sinks: ReadonlyMap<string, MemorySink>;
  /** Runs records through the config's decoder, routes and transforms into the memory sinks; each run starts empty. */
  run(records: readonly TestRecord[]): Promise<PipelineRun>;
}

const bytes = (v: string | Buffer | null): Buffer | null => (v === null ? null : typeof v === 'string' ? Buffer.from(v, 'utf8') : v);

/**
 * The config's pipeline with every sink replaced by a memory sink of the same name: the real decoder,
 * routes, transform chains and handlers (the pipeline's own `prepareRecord`), no servers.
 */
export async function createTestPipeline(configOrFile: Config | string): Promise<TestPipeline> {
  const config = typeof configOrFile === 'string' ? await loadConfig(configOrFile) : configOrFile;
  const sinks = new Map(config.sinks.map((s) => [s.name, createMemorySink(s.name)] as const));
  const router = createRouter(config.routes, sinks as ReadonlyMap<string, Sink>);
  const decoding = decodingFromConfig(config);
  const deps = { decoder: decoding.decoder, router, unrouted: config.unrouted };

  async function run(records: readonly TestRecord[]): Promise<PipelineRun> {
    for (const sink of sinks.values()) sink.clear();
    const next = new Map<string, number>();
    const raw: RawRecord[] = records.map((r) => {
      const partition = r.partition ?? 0;
      const slot = `${r.topic}/${partition}`;
      const offset = r.offset ?? next.get(slot) ?? 0;
      next.set(slot, Number(offset) + 1);
      return {
        topic: r.topic,
        partition,
        offset: String(offset),
        timestamp: r.timestamp ?? 1_700_000_000_000,
        key: bytes(r.key),
        value: bytes(r.value),
        headers: r.headers ?? {},
      };
    });
    // Avro-framed records need their schemas from the registry first, as in the pipeline.
    if (decoding.prepare) await decoding.prepare(raw, new AbortController().signal);
    const deadLetters: DeadLetter[] = [];
    const skipped: { index: number; reason: string }[] = [];
    for (const [index, record] of raw.entries()) {
      const prepared = prepareRecord(record, deps);
      if (prepared.kind === 'failed') {
        const { stage, code, message } = prepared.error;
        deadLetters.push({ index, stage, code, message, table: prepared.table?.id });
      } else if (prepared.kind === 'skipped') {
        skipped.push({ index, reason: prepared.reason });
      } else {
        for (const sink of prepared.route.sinks) await sink.write([prepared.event]);
      }
    }
    return { writes: new Map([...sinks].map(([name, sink]) => [name, [...sink.writes]])), deadLetters, skipped };
  }

  return { sinks, run };
}
