import { EventEmitter } from 'node:events';
import type { CdcError, ErrorStage } from './errors.ts';

export interface PartitionRef {
  readonly topic: string;
  readonly partition: number;
}

/** Typed events of a running router; metrics, the progress display and tests listen to them. */
export interface RouterEventMap {
  'batch.processed': PartitionRef & { records: number; changes: number; durationMs: number };
  'batch.committed': PartitionRef & { offset: string };
  'record.failed': PartitionRef & { offset: string; error: CdcError };
  'record.skipped': PartitionRef & { offset: string; reason: 'unrouted' | 'filtered' | 'tombstone' | 'heartbeat' | 'transaction' };
  'partition.halted': PartitionRef & { offset: string; error: CdcError };
  /** A failed record was stored in the dead-letter queue (`id` there) and may be committed past. */
  'record.dead-lettered': PartitionRef & { offset: string; id: string; stage: ErrorStage; sink: string | undefined; error: CdcError };
  'sink.written': { sink: string; records: number; durationMs: number };
  'sink.retry': { sink: string; attempt: number; delayMs: number; error: unknown };
  'group.joined': { memberId: string; assignment: Record<string, number[]> };
}

export type RouterEventName = keyof RouterEventMap;

/** EventEmitter with the payload types above; emit and on check names and payloads. */
export class RouterEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  emit<K extends RouterEventName>(name: K, payload: RouterEventMap[K]): void {
    this.emitter.emit(name, payload);
  }

  on<K extends RouterEventName>(name: K, listener: (payload: RouterEventMap[K]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  /** Resolves with the first payload that satisfies the predicate. */
  waitFor<K extends RouterEventName>(
    name: K,
    predicate: (payload: RouterEventMap[K]) => boolean = () => true,
    timeoutMs = 60_000,
  ): Promise<RouterEventMap[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name}`));
      }, timeoutMs);
      const off = this.on(name, (p) => {
        if (!predicate(p)) return;
        clearTimeout(timer);
        off();
        resolve(p);
      });
    });
  }
}
