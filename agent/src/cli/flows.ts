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
      );
      process.stdout.write(`${rows.length === 0 ? 'no flows yet' : out}\n`);
    });
}
