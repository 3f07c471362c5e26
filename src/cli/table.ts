/** Left-aligned columns two spaces apart, widths from the content; each line without trailing blanks. */
export function tableLines(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/** A header and its rows as one text, each line ended. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return tableLines([header, ...rows]).join('\n') + '\n';
}
