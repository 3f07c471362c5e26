import type { RouterEvents } from '../events.ts';
import { fetchStatus } from './status-command.ts';

/**
 * A one-line terminal summary every interval: events/s, lag per partition, writes per sink, DLQ
 * entries. Read from the instance's own /status (the same numbers `cdc-router status` shows);
 * without a metrics endpoint, counted from the router's events.
 */
export function startProgress(events: RouterEvents, out: NodeJS.WritableStream, statusUrl: string | undefined, intervalMs = 2000): () => void {
  let records = 0;
  let windowRecords = 0;
  let deadLettered = 0;
  const sinkWrites = new Map<string, number>();
  const offs = [
    events.on('batch.processed', (b) => {
      records += b.records;
      windowRecords += b.records;
    }),
    events.on('sink.written', (w) => sinkWrites.set(w.sink, (sinkWrites.get(w.sink) ?? 0) + w.records)),
    events.on('record.dead-lettered', () => deadLettered++),
  ];
  let last = Date.now();
  const fromEvents = () => {
    const now = Date.now();
    const rate = (windowRecords * 1000) / Math.max(1, now - last);
    windowRecords = 0;
    last = now;
    const sinks = [...sinkWrites].map(([s, n]) => `${s}=${n}`).join(' ') || '-';
    return `events/s ${rate.toFixed(0)} | total ${records} | writes ${sinks} | dlq ${deadLettered}`;
  };
  const tick = async () => {
    if (!statusUrl) return fromEvents();
    const got = await fetchStatus(statusUrl, 1500);
    if (!('report' in got)) return fromEvents();
    const r = got.report;
    const lag = r.partitions.map((p) => `${p.topic.split('.').pop()}/${p.partition}:${p.lag ?? '?'}`).join(' ') || '-';
    const sinks = r.sinks.map((s) => `${s.name}=${s.written}${s.health === 'ok' ? '' : `(${s.health})`}`).join(' ') || '-';
    return `events/s ${r.rates.consumed_per_second.toFixed(0)} | lag ${lag} | writes ${sinks} | dlq ${r.dlq.entries}`;
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    tick()
      .then((line) => out.write(`${line}\n`))
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    for (const off of offs) off();
  };
}
