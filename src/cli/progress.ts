import type { RouterEvents } from '../events.ts';

/** A one-line terminal summary every interval: throughput, per-sink writes, failures, commits. */
export function startProgress(events: RouterEvents, out: NodeJS.WritableStream, intervalMs = 2000): () => void {
  let records = 0;
  let windowRecords = 0;
  let failed = 0;
  const sinkWrites = new Map<string, number>();
  const committed = new Map<string, string>();
  const offs = [
    events.on('batch.processed', (b) => {
      records += b.records;
      windowRecords += b.records;
    }),
    events.on('sink.written', (w) => sinkWrites.set(w.sink, (sinkWrites.get(w.sink) ?? 0) + w.records)),
    events.on('record.failed', () => failed++),
    events.on('batch.committed', (c) => committed.set(`${c.topic}/${c.partition}`, c.offset)),
  ];
  let last = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    const rate = (windowRecords * 1000) / Math.max(1, now - last);
    windowRecords = 0;
    last = now;
    const sinks = [...sinkWrites].map(([s, n]) => `${s}=${n}`).join(' ') || '-';
    const commits = [...committed].map(([tp, o]) => `${tp}@${o}`).join(' ') || '-';
    out.write(`events/s ${rate.toFixed(0)} | total ${records} | writes ${sinks} | failed ${failed} | committed ${commits}\n`);
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    for (const off of offs) off();
  };
}
