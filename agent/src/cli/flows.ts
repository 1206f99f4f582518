// `nodemesh flows`: the node's connections, from the agent's admin API.
import type { Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import type { FlowRow } from '../telemetry/flow-table.js';
import { bytes, duration, table } from './table.js';
import { ADMIN_DEFAULT } from './defaults.js';

export function flowsCommand(program: Command): void {
  program
    .command('flows')
    .description("list the node's connections: source pod → destination, endpoint, bytes, state")
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', 'print a JSON array for scripts')
    .action(async (opts: { admin: string; json?: boolean }) => {
      const rows = await adminGet<FlowRow[]>(parseAddress(opts.admin, '--admin'), '/flows');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      const out = table(
        ['SOURCE', 'DESTINATION', 'ENDPOINT', 'SENT', 'RECV', 'STATE', 'AGE', 'DURATION', 'FLAGS'],
        rows.map((r) => [
          r.source.pod ?? `${r.source.ip}:${r.source.port}`,
          `${r.destination.service ?? r.destination.pod ?? r.destination.ip}:${r.destination.port}`,
          r.endpoint ? `${r.endpoint.pod} (${r.endpoint.node})` : '-',
          bytes(r.bytesSent),
          bytes(r.bytesReceived),
          r.state,
          duration(Math.max(0, Date.now() - Date.parse(r.startTime))),
          duration(r.durationMs),
          r.responseFlags,
        ]),
      );
      process.stdout.write(`${rows.length === 0 ? 'no flows yet' : out}\n`);
    });
}
