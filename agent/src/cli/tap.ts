// `nodemesh tap`: the requests this node's proxy serves, live, one line each, filtered and
// rate-capped by the agent (like `linkerd viz tap`).
import type { Command } from 'commander';
import { adminStream, parseAddress } from '../admin/client.js';
import { DEFAULT_TAP_MAX_RPS, parseTapFilter, TAP_FILTER_KEYS, type TapEvent } from '../telemetry/tap.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { colours, ms, shortName, truncate, type Colours } from './table.js';

interface TapFlags {
  admin: string;
  to?: string;
  namespace?: string;
  method?: string;
  path?: string;
  maxRps?: string;
  json?: boolean;
}

export function tapCommand(program: Command): void {
  program
    .command('tap')
    .description('stream live requests: time, direction, method, status, latency, source, destination, authority and path')
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--to <name>', 'only requests to this service or pod (name or namespace/name)')
    .option('--namespace <ns>', 'only requests with a pod, service or identity of this namespace at either end')
    .option('--method <method>', 'only requests with this HTTP method')
    .option('--path <prefix>', 'only requests whose path starts with this prefix')
    .option('--max-rps <n>', `at most this many requests a second (the rest are skipped)`, String(DEFAULT_TAP_MAX_RPS))
    .option('--json', 'print one JSON object per request, one per line')
    .action(async (flags: TapFlags) => {
      const address = parseAddress(flags.admin, '--admin');
      const query = new URLSearchParams();
      const values: Record<(typeof TAP_FILTER_KEYS)[number], string | undefined> = {
        to: flags.to,
        namespace: flags.namespace,
        method: flags.method,
        path: flags.path,
        'max-rps': flags.maxRps,
      };
      for (const key of TAP_FILTER_KEYS) if (values[key] !== undefined) query.set(key, values[key] as string);
      // Refuse a bad flag here, before reaching for the agent (which checks the same).
      parseTapFilter(query);
      await tap(address, query, flags.json === true);
    });
}

async function tap(address: { host: string; port: number }, query: URLSearchParams, json: boolean): Promise<void> {
  const out = process.stdout;
  const c = colours();
  const width = out.isTTY ? out.columns || 80 : 80;
  if (!json) out.write(`${c.bold(tapHeader(width))}\n`);
  const stream = adminStream<TapEvent>(address, `/tap?${query}`, (e) => out.write(`${json ? JSON.stringify(e) : tapLine(e, width, c)}\n`));
  process.once('SIGINT', () => stream.stop());
  // A reader that went away (`| head`) ends the tap, quietly.
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') stream.stop();
  });
  await stream.done;
}

/** Fixed columns, so lines align as they stream: TIME DIR METHOD STATUS LATENCY, then the flexible ones. */
const FIXED = [8, 3, 6, 7, 7] as const;

function flexWidths(width: number): [number, number, number] {
  const flex = Math.max(24, width - FIXED.reduce((a, b) => a + b, 0) - 7);
  const name = Math.min(30, Math.max(8, Math.floor(flex * 0.27)));
  return [name, name, flex - 2 * name];
}

export function tapHeader(width: number): string {
  return line(['TIME', 'DIR', 'METHOD', 'STATUS', 'LATENCY', 'SOURCE', 'DESTINATION', 'REQUEST'], width);
}

export function tapLine(e: TapEvent, width: number, c: Colours): string {
  const [srcW, dstW, reqW] = flexWidths(width);
  const status = `${e.status === 0 ? '-' : e.status}${e.grpcStatus === null ? '' : `/${e.grpcStatus}`}${e.responseFlags === '-' ? '' : ` ${e.responseFlags}`}`;
  const source = e.source.pod ?? e.source.identity?.replace(/^spiffe:\/\/[^/]+\//, '') ?? e.source.ip;
  const destination = e.destination.service ?? e.destination.endpoint?.pod ?? '-';
  const failed = e.status === 0 || e.status >= 500 || (e.grpcStatus !== null && e.grpcStatus !== 0);
  return line(
    [
      new Date(e.time).toTimeString().slice(0, 8),
      e.reporter === 'source' ? 'out' : 'in',
      e.method,
      status,
      ms(e.latencyMs).padStart(FIXED[4]),
      shortName(source, srcW),
      shortName(destination, dstW),
      request(e.authority, e.path, reqW),
    ],
    width,
    (text, i) => (i !== 3 ? text : failed ? c.red(text) : e.status < 400 ? c.green(text) : text),
  );
}

/** Authority and path when both fit; the path alone (cut at the end) otherwise. */
function request(authority: string, path: string, width: number): string {
  return authority.length + path.length <= width ? `${authority}${path}` : truncate(path, width);
}

/** Cells cut and padded to their column, then painted (escape codes take no column). */
function line(cells: readonly string[], width: number, paint = (text: string, _column: number) => text): string {
  const widths = [...FIXED, ...flexWidths(width)];
  return cells
    .map((cell, i) => {
      const w = widths[i] as number;
      return paint(i === cells.length - 1 ? truncate(cell, w) : truncate(cell, w).padEnd(w), i);
    })
    .join(' ')
    .trimEnd();
}
