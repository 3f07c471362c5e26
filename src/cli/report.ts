import type { GroupOffsets, ResetPlan } from '../replay/group-offsets.ts';
import type { ReplaySummary } from '../replay/replay.ts';
import { tableLines } from './table.ts';

const show = (v: bigint | undefined): string => (v === undefined ? '-' : v.toString());

export function formatReplaySummary(s: ReplaySummary): string {
  const lines: string[] = [];
  if (s.dryRun) {
    lines.push(`dry run: would replay ${s.topic} (offsets from..until, until excluded); nothing read`);
    lines.push(...tableLines([['PARTITION', 'FROM', 'UNTIL', 'OFFSETS'], ...s.partitions.map((p) => [String(p.partition), String(p.from), String(p.until), String(p.until > p.from ? p.until - p.from : 0n)])]));
    return lines.join('\n') + '\n';
  }
  lines.push(`replay of ${s.topic}${s.group ? ` (throwaway group ${s.group}, deleted)` : ': nothing in range'}`);
  const total = { records: 0, written: 0, skipped: 0, failed: 0 };
  const rows = s.partitions.map((p) => {
    total.records += p.records;
    total.written += p.written;
    total.skipped += p.skipped;
    total.failed += p.failed;
    const state = p.halted ? `halted at ${p.halted.offset}` : p.complete ? 'done' : 'incomplete';
    return [String(p.partition), String(p.from), String(p.until), String(p.records), String(p.written), String(p.skipped), String(p.failed), state];
  });
  lines.push(
    ...tableLines([
      ['PARTITION', 'FROM', 'UNTIL', 'RECORDS', 'WRITTEN', 'SKIPPED', 'FAILED', 'STATE'],
      ...rows,
      ['total', '', '', String(total.records), String(total.written), String(total.skipped), String(total.failed), ''],
    ]),
  );
  for (const p of s.partitions) {
    if (p.halted) {
      lines.push(`partition ${p.partition} stopped at offset ${p.halted.offset}, which failed and could not be parked: ${p.halted.error.message}`);
    }
  }
  if (s.interrupted) lines.push('interrupted: the replay did not reach the end of every range');
  else if (total.failed > 0) lines.push(`${total.failed} record(s) failed permanently (see the log)`);
  return lines.join('\n') + '\n';
}

export function formatGroupOffsets(o: GroupOffsets): string {
  const { group } = o;
  const lines = [`group ${group.groupId}: state ${group.state}, ${group.members.length} member(s)`];
  for (const m of group.members) {
    const assigned = Object.entries(m.assignment)
      .map(([t, ps]) => `${t}[${[...ps].sort((a, b) => a - b).join(',')}]`)
      .join(' ');
    lines.push(`  member ${m.memberId} (client ${m.clientId}, host ${m.host}): ${assigned || 'no partitions'}`);
  }
  if (o.partitions.length === 0) {
    lines.push('no partitions: none of the configured topics exists');
    return lines.join('\n') + '\n';
  }
  lines.push(
    ...tableLines([
      ['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG'],
      ...o.partitions.map((p) => [p.topic, String(p.partition), show(p.committed), String(p.end), show(p.lag)]),
    ]),
  );
  const neverCommitted = o.partitions.filter((p) => p.committed === undefined).length;
  if (neverCommitted > 0) {
    lines.push(
      o.fromBeginning
        ? `${neverCommitted} partition(s) never committed (COMMITTED -): their lag counts from the first retained offset, where from_beginning starts`
        : `${neverCommitted} partition(s) never committed (COMMITTED -): from_beginning is false, the group will start at the end then, so their lag is unknown (-)`,
    );
  }
  lines.push(`total lag: ${o.totalLag === undefined ? 'unknown (-): not every partition has a known lag' : o.totalLag}`);
  return lines.join('\n') + '\n';
}

/** Offsets as JSON numbers: Kafka offsets stay far below 2^53 in practice. */
export function groupOffsetsJson(o: GroupOffsets): string {
  const num = (v: bigint | undefined) => (v === undefined ? null : Number(v));
  return (
    JSON.stringify({
      group: o.group.groupId,
      state: o.group.state,
      members: o.group.members.map((m) => ({ member_id: m.memberId, client_id: m.clientId, host: m.host, assignment: m.assignment })),
      partitions: o.partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        committed: num(p.committed),
        end: Number(p.end),
        lag: num(p.lag),
      })),
      total_lag: num(o.totalLag),
    }) + '\n'
  );
}

export function formatResetPlan(plan: ResetPlan, applied: boolean): string {
  const lines = [
    `${applied ? 'reset' : 'dry run: would reset'} group ${plan.groupId} on ${plan.topic}${applied ? '' : '; nothing changed'}`,
    ...plan.changes.map((c) => `  ${plan.topic}/${c.partition}: ${show(c.from)} -> ${c.to}`),
  ];
  return lines.join('\n') + '\n';
}
