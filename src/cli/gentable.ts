/** The listing of `bfs generations` (and `bfs ls` without an argument), shared by both formats. */

/** Both formats: each damaged generation named on stderr, then how many (the exit status stays 0). */
export function warnDamaged(damaged: ReadonlyArray<{ id: number; problem: string }>): void {
  for (const d of damaged) process.stderr.write(`bfs: warning: gen${d.id} is damaged: ${d.problem}\n`)
  if (damaged.length) process.stderr.write(`bfs: warning: ${damaged.length} damaged generation${damaged.length > 1 ? 's' : ''}; the others are intact (details: bfs verify --all)\n`)
}

/** A damaged generation's row of the table. */
export function damagedRow(id: number, what: string): string[] {
  return [`gen${id}`, '-', '-', `(${what})`, 'DAMAGED', '-', '-', '-', '-', '-']
}

/** The table of `bfs generations` (both formats): a header, then one row of these columns per generation. */
export function writeGenerationsTable(table: string[][]): void {
  const head = ['ID', 'TIME', 'LABEL', 'SOURCE', 'KIND', 'FILES', 'SIZE', 'STORED', 'HOST', 'TAGS']
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)))
  for (const r of [head, ...table]) process.stdout.write(r.map((c, i) => (i >= 5 && i <= 7 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n')
}
