/**
 * The one plain-text table of pn's human output: each column as wide as its widest cell (so a
 * `perf_event_array` or a long owner never pushes the next column out of line), two spaces
 * between columns, no trailing blanks. Returns text; the base command prints it.
 */
export type Cell = string | number | boolean | undefined | null

export interface TableOptions {
  /** Columns to right-align (counters), by index. */
  right?: number[]
}

export function table(header: string[], rows: Cell[][], opts: TableOptions = {}): string {
  const cells = [header, ...rows.map((r) => header.map((_, i) => (r[i] === undefined || r[i] === null || r[i] === '' ? '-' : String(r[i]))))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => width(r[i]))))
  const right = new Set(opts.right ?? [])
  return cells
    .map((r) => r.map((c, i) => pad(c, widths[i], right.has(i))).join('  ').trimEnd())
    .join('\n')
}

/** Display width: ANSI colour codes take no room. */
function width(s: string): number {
  // eslint-disable-next-line no-control-regex -- measuring coloured cells
  return s.replace(/\u001B\[[0-9;]*m/g, '').length
}

function pad(s: string, w: number, right: boolean): string {
  const fill = ' '.repeat(Math.max(0, w - width(s)))
  return right ? fill + s : s + fill
}
