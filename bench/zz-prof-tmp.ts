import { Client } from '@elastic/elasticsearch';
import type { Row } from '../src/model/change-event.ts';
const es = new Client({ node: 'http://127.0.0.1:9200' });
const filler = 'lorem ipsum dolor sit amet consectetur adipiscing elit '.repeat(16).slice(0, 760);
const rows: Row[] = Array.from({ length: 50000 }, (_, i) => ({ id: i, name: `c ${i}`, email: `c${i}@x.com`, amount: '12.34', created_at: '2024-01-01T00:00:00.000000', active: true, tags: ['a'], notes: `${i} ${filler}` }));
for (let r = 0; r < 4; r++) {
  for (const versioned of r % 2 ? [true, false] : [false, true]) {
    const index = `prof_bare_${r}_${versioned}`;
    await es.indices.create({ index, settings: { number_of_replicas: 0 } });
    const c0 = process.cpuUsage(); const t0 = performance.now();
    let v = 100;
    for (let s = 0; s < rows.length; s += 5000) await es.bulk({ operations: rows.slice(s, s + 5000).flatMap((row) => [{ index: { _index: index, _id: String(row['id']), ...(versioned ? { version: (v += 8), version_type: 'external' as const } : {}) } }, row]) });
    const cpu = process.cpuUsage(c0);
    console.log(versioned ? 'versioned' : 'plain    ', Math.round(performance.now() - t0), 'ms wall', Math.round((cpu.user + cpu.system) / 1000), 'ms cpu');
    await es.indices.delete({ index });
  }
}
await es.close();
