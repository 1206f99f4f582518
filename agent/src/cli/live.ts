// The refresh loop of live views (`flows --watch`, `top`): fetch every second until Ctrl-C;
// on a terminal redraw in place, otherwise print each snapshot (JSON: one per line).
import { clip, colours, type Colours } from './table.js';

export interface LiveView<T> {
  fetch(): Promise<T>;
  /** The human form: table lines. */
  render(data: T, c: Colours): string[];
  /** The dim line above the table on a terminal, e.g. "3 flows". */
  summary(data: T): string;
  json: boolean;
}

const INTERVAL_MS = 1000;

/**
 * On a terminal: redraw in place, clipped to the window so a frame never scrolls. Otherwise
 * (a pipe, a file): one full snapshot per second, separated by a blank line.
 */
export async function live<T>(view: LiveView<T>): Promise<void> {
  const out = process.stdout;
  const tty = out.isTTY === true && !view.json;
  const c = colours();
  let stopped = false;
  let wake = () => undefined as void;
  process.once('SIGINT', () => {
    stopped = true;
    wake();
  });
  if (tty) out.write('\x1b[?25l\x1b[2J');
  try {
    for (let first = true; !stopped; first = false) {
      const data = await view.fetch();
      if (stopped) break;
      if (view.json) out.write(`${JSON.stringify(data)}\n`);
      else if (tty) out.write(frame(view.render(data, c), view.summary(data), c, out));
      else out.write(`${first ? '' : '\n'}${view.render(data, c).join('\n')}\n`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, INTERVAL_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    if (tty) out.write('\x1b[?25h\n');
  }
}

/** Home, then each line clearing its old tail, then clear below: no flicker, no scroll. */
function frame(lines: string[], summary: string, c: Colours, out: NodeJS.WriteStream): string {
  const height = Math.max(3, (out.rows || 24) - 1);
  const width = out.columns || 80;
  const room = height - 1;
  const shown = lines.length > room ? [...lines.slice(0, room - 1), c.dim(`… ${lines.length - room + 1} more rows`)] : lines;
  const status = c.dim(`${new Date().toLocaleTimeString()}  ${summary}, every 1s; Ctrl-C to stop`);
  return `\x1b[H${[status, ...shown].map((l) => `${clip(l, width)}\x1b[K`).join('\n')}\x1b[J`;
}
