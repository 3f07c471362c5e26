/**
 * Reading InfluxDB 1.x back in tests, exactly: queries ask for CSV (`Accept: application/csv`),
 * whose cells are the server's own text, so int64 beyond 2^53 keeps every digit (the JSON answer
 * would go through JSON.parse).
 */
export const INFLUX_URL = process.env['TEST_INFLUX_URL'] ?? `http://127.0.0.1:${process.env['INFLUX_PORT'] ?? '18086'}`;

/** RFC 4180 CSV: quoted cells with "" for a quote, and newlines inside quotes. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ''));
}

export interface InfluxPoint {
  readonly measurement: string;
  readonly time: string;
  /** Every column but name, tags and time, as the server's text; empty cells left out. */
  readonly values: Readonly<Record<string, string>>;
}

export async function influxQuery(q: string, db?: string, url = INFLUX_URL): Promise<string> {
  const params = new URLSearchParams({ q, epoch: 'ns' });
  if (db) params.set('db', db);
  const res = await fetch(`${url}/query?${params.toString()}`, { method: 'POST', headers: { accept: 'application/csv' } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${q}: HTTP ${res.status} ${text}`);
  return text;
}

/** Points of a SELECT (times in ns). Multi-series answers are one table whose `name` column says the measurement. */
export async function selectPoints(q: string, db: string, url = INFLUX_URL): Promise<InfluxPoint[]> {
  const [header, ...rows] = parseCsv(await influxQuery(q, db, url));
  if (!header) return [];
  return rows.map((r) => {
    const values: Record<string, string> = {};
    header.forEach((h, i) => {
      if (h !== 'name' && h !== 'tags' && h !== 'time' && r[i] !== '' && r[i] !== undefined) values[h] = r[i]!;
    });
    return { measurement: r[header.indexOf('name')]!, time: r[header.indexOf('time')]!, values };
  });
}

export async function dropDatabase(db: string, url = INFLUX_URL): Promise<void> {
  await influxQuery(`DROP DATABASE "${db.replace(/["\\]/g, '\\$&')}"`, undefined, url);
}
