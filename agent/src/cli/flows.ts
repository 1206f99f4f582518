// `nodemesh flows`: the node's connections, from the agent's admin API; filtered by the agent,
// once or, with --watch, refreshed every second (in place on a terminal).
import { Option, type Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import { FLOW_FILTER_KEYS, type FlowFilter } from '../telemetry/flow-filter.js';
import type { FlowRow } from '../telemetry/flow-table.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { live } from './live.js';
import { bytes, colours, duration, painter, table, type Colours } from './table.js';

interface FlowsFlags extends FlowFilter {
  admin: string;
  json?: boolean;
  watch?: boolean;
}

export function flowsCommand(program: Command): void {
  program
    .command('flows')
    .description("list the node's connections: source pod → destination, endpoint, bytes, state")
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', 'print a JSON array for scripts (with --watch: one array per line)')
    .option('--namespace <ns>', 'only flows with a pod or service of this namespace at either end')
    .option('--pod <name>', 'only flows from, to or served by this pod (name or namespace/name)')
    .option('--service <name>', 'only flows to this service (name or namespace/name)')
    .addOption(new Option('--state <state>', 'only open or only closed flows').choices(['open', 'closed']))
    .option('--watch', 'refresh every second until Ctrl-C')
    .action(async (flags: FlowsFlags) => {
      const address = parseAddress(flags.admin, '--admin');
      const query = new URLSearchParams();
      for (const key of FLOW_FILTER_KEYS) if (flags[key]) query.set(key, flags[key] as string);
      const fetchRows = () => adminGet<FlowRow[]>(address, `/flows${query.size ? `?${query}` : ''}`);
      if (!flags.watch) {
        const rows = await fetchRows();
        process.stdout.write(flags.json ? `${JSON.stringify(rows, null, 2)}\n` : `${render(rows, colours()).join('\n')}\n`);
        return;
      }
      await live({ fetch: fetchRows, render, summary: (rows) => `${rows.length} flows`, json: flags.json === true });
    });
}

function render(rows: readonly FlowRow[], c: Colours): string[] {
  if (rows.length === 0) return ['no flows yet'];
  const out = table(
    ['DIR', 'SOURCE', 'DESTINATION', 'ENDPOINT', 'SENT', 'RECV', 'STATE', 'DURATION', 'SECURITY', 'FLAGS', 'POLICY'],
    rows.map((r) => [
      r.direction === 'inbound' ? 'in' : 'out',
      r.source.pod ?? r.source.identity?.replace(/^spiffe:\/\/[^/]+\//, '') ?? `${r.source.ip}:${r.source.port}`,
      `${r.destination.service ?? r.destination.pod ?? r.destination.ip}:${r.destination.port}`,
      r.endpoint ? `${r.endpoint.pod}@${r.endpoint.node}` : '-',
      bytes(r.bytesSent),
      bytes(r.bytesReceived),
      r.state,
      duration(r.durationMs),
      r.security ?? '-',
      r.responseFlags,
      r.authorization ? `${r.authorization.allowed ? 'allow' : 'DENY'}${r.authorization.policy ? ` ${r.authorization.policy}` : ''}` : '-',
    ]),
    painter(c, (text, row, column) => {
      const r = rows[row] as FlowRow;
      if (column === 9 && r.responseFlags !== '-') return c.red(text);
      if (column === 10 && r.authorization?.allowed === false) return c.red(text);
      if (column === 6 && r.state === 'open') return c.green(text);
      return text;
    }),
  );
  return out.split('\n');
}
