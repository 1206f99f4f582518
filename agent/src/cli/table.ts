// Aligned plain-text tables for the human form of CLI output, coloured only on a terminal.

/** Colours a cell after alignment (escape codes have no width); row -1 is the header. */
export type Paint = (text: string, row: number, column: number) => string;

export function table(headers: readonly string[], rows: readonly (readonly string[])[], paint?: Paint): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[], row: number) =>
    cells
      .map((c, i) => {
        const text = i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0);
        return paint ? paint(text, row, i) : text;
      })
      .join('  ')
      .trimEnd();
  return [line(headers, -1), ...rows.map((r, i) => line(r, i))].join('\n');
}

export interface Colours {
  bold(s: string): string;
  red(s: string): string;
  green(s: string): string;
  dim(s: string): string;
}

const sgr = (code: number) => (s: string) => `\x1b[${code}m${s}\x1b[0m`;
const plain = (s: string) => s;

/** ANSI colours when writing to a terminal, unless NO_COLOR is set (no-color.org). */
export function colours(stream: NodeJS.WriteStream = process.stdout): Colours {
  const on = stream.isTTY === true && process.env.NO_COLOR === undefined;
  return on ? { bold: sgr(1), red: sgr(31), green: sgr(32), dim: sgr(2) } : { bold: plain, red: plain, green: plain, dim: plain };
}

/** The usual paint: bold headers, plus whatever `cell` adds for data cells. */
export function painter(c: Colours, cell?: (text: string, row: number, column: number) => string): Paint {
  return (text, row, column) => (row < 0 ? c.bold(text) : cell ? cell(text, row, column) : text);
}

/** The width to lay out for: the terminal's, or 80 columns when stdout is not a terminal. */
export function outputWidth(stream: NodeJS.WriteStream = process.stdout): number {
  return stream.isTTY ? stream.columns || 80 : 80;
}

/** A byte count in at most 5 characters, binary units: 512B, 1.5K, 48.8K, 977K, 12M. */
export function bytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ['K', 'M', 'G', 'T'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${v < 99.95 ? v.toFixed(1) : Math.min(1023, Math.round(v))}${units[u]}`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.floor((ms % 60_000) / 1000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.floor((ms % 3_600_000) / 60_000)}m`;
}

/** The first `width` visible characters of a line, keeping its colour codes (for a terminal). */
export function clip(line: string, width: number): string {
  let out = '';
  let visible = 0;
  for (let i = 0; i < line.length; i++) {
    const escape = /^\x1b\[[0-9;]*m/.exec(line.slice(i));
    if (escape) {
      out += escape[0];
      i += escape[0].length - 1;
    } else if (visible < width) {
      out += line[i];
      visible += 1;
    }
  }
  return out;
}

/** At most `width` characters: the start, then "…". */
export function truncate(text: string, width: number): string {
  if (text.length <= width) return text;
  return width <= 0 ? '' : `${text.slice(0, width - 1)}…`;
}

/** "namespace/name" in at most `width` characters: whole, else the name alone, else its ends. */
export function shortName(key: string, width: number): string {
  if (key.length <= width) return key;
  const name = key.slice(key.indexOf('/') + 1);
  if (name.length <= width) return name;
  if (width <= 1) return name.slice(0, Math.max(0, width));
  const head = Math.ceil((width - 1) / 2);
  return `${name.slice(0, head)}…${name.slice(name.length - (width - 1 - head))}`;
}

/** A latency in at most 6 characters: 0.42ms, 12.3ms, 123ms, 1.23s, 12.3s. */
export function ms(n: number): string {
  if (n < 10) return `${n.toFixed(2)}ms`;
  if (n < 100) return `${n.toFixed(1)}ms`;
  if (n < 1000) return `${Math.round(n)}ms`;
  if (n < 10_000) return `${(n / 1000).toFixed(2)}s`;
  if (n < 100_000) return `${(n / 1000).toFixed(1)}s`;
  return `${Math.round(n / 1000)}s`;
}
