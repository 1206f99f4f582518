// `nodemesh top`: live request rate, success rate and latency per destination service (and
// per route within it) as this node's proxy sees them, from the agent's rolling window.
import type { Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import type { ServiceStats, TopSnapshot } from '../telemetry/request-stats.js';
import type { WindowStats } from '../telemetry/rolling-window.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { live } from './live.js';
import { ms, painter, shortName, table, type Colours } from './table.js';

interface TopFlags {
  admin: string;
  namespace?: string;
  json?: boolean;
}

const HEADERS = ['DIR', 'SERVICE', 'RPS', 'SUCCESS', 'P50', 'P95', 'P99', 'CONNS'];
/** The SERVICE column never gets narrower than this, even if the line then overflows. */
const MIN_NAME_WIDTH = 12;

export function topCommand(program: Command): void {
  program
    .command('top')
    .description('live requests per destination service and route: RPS, success rate, p50/p95/p99 latency, open connections')
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--namespace <ns>', 'only services of this namespace')
    .option('--json', 'print one JSON snapshot per line, every second')
    .action(async (flags: TopFlags) => {
      const address = parseAddress(flags.admin, '--admin');
      const query = new URLSearchParams(flags.namespace ? { namespace: flags.namespace } : {});
      const width = process.stdout.isTTY ? process.stdout.columns || 80 : 80;
      await live<TopSnapshot>({
        fetch: () => adminGet<TopSnapshot>(address, `/top${query.size ? `?${query}` : ''}`),
        render: (snapshot, c) => renderTop(snapshot, c, width),
        summary: (s) => `${s.services.length} services, last ${s.windowSeconds}s`,
        json: flags.json === true,
      });
    });
}

interface Row {
  stats: WindowStats;
  dir: string;
  name: string;
  /** Route rows are indented under their service and keep the indent when abbreviated. */
  indent: string;
  conns: string;
}

export function renderTop(snapshot: TopSnapshot, c: Colours, width: number): string[] {
  if (snapshot.services.length === 0) return [`no requests in the last ${snapshot.windowSeconds}s`];
  const rows: Row[] = snapshot.services.flatMap((s: ServiceStats) => [
    { stats: s, dir: s.reporter === 'source' ? 'out' : 'in', name: s.service ?? '(unknown)', indent: '', conns: s.openConnections === null ? '-' : String(s.openConnections) },
    ...s.routes.map((r) => ({ stats: r, dir: '', name: r.route ?? '(no route)', indent: '  ', conns: '' })),
  ]);
  const cells = rows.map((r) => [r.dir, r.indent + r.name, rate(r.stats.rps), success(r.stats.successRate), ...latencies(r.stats), r.conns]);
  const others = HEADERS.reduce((sum, h, i) => (i === 1 ? sum : sum + Math.max(h.length, ...cells.map((row) => (row[i] as string).length))), 0);
  const nameWidth = Math.max(MIN_NAME_WIDTH, width - others - 2 * (HEADERS.length - 1));
  for (const [i, r] of rows.entries()) (cells[i] as string[])[1] = r.indent + abbreviate(r.name, nameWidth - r.indent.length);
  return table(
    HEADERS,
    cells,
    painter(c, (text, row, column) => {
      const sr = (rows[row] as Row).stats.successRate;
      if (column !== 3 || sr === null) return text;
      return sr === 1 ? c.green(text) : sr < 0.95 ? c.red(text) : text;
    }),
  ).split('\n');
}

/** "ns/name", or a route's "Kind ns/name" keeping its kind. */
function abbreviate(name: string, width: number): string {
  const space = name.indexOf(' ');
  if (name.length <= width || space < 0) return shortName(name, width);
  return `${name.slice(0, space)} ${shortName(name.slice(space + 1), width - space - 1)}`;
}

const rate = (rps: number) => (rps < 100 ? rps.toFixed(1) : String(Math.round(rps)));
const success = (r: number | null) => (r === null ? '-' : `${(r * 100).toFixed(r === 1 ? 0 : 1)}%`);
const latencies = (s: WindowStats) => (s.latencyMs ? [ms(s.latencyMs.p50), ms(s.latencyMs.p95), ms(s.latencyMs.p99)] : ['-', '-', '-']);
