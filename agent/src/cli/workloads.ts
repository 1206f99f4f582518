// `nodemesh workloads`: the pods of this node as the proxy sees them (like `istioctl
// ztunnel-config workloads`): address, identity, whether captured, mTLS mode, cgroup.
import type { Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import type { WorkloadView } from '../admin/views.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { colours, painter, table } from './table.js';

export function workloadsCommand(program: Command): void {
  program
    .command('workloads')
    .description("list this node's pods: IP, identity, enrolled, mTLS mode, cgroup")
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', 'print a JSON array for scripts')
    .action(async (opts: { admin: string; json?: boolean }) => {
      const list = await adminGet<WorkloadView[]>(parseAddress(opts.admin, '--admin'), '/workloads');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (list.length === 0) {
        process.stdout.write('no pods on this node\n');
        return;
      }
      const c = colours();
      const rows = list.map((w) => [
        w.namespace,
        w.name,
        w.ip ?? '-',
        w.node,
        w.enrolled ? 'yes' : w.notCapturedReason ? `no (${w.notCapturedReason})` : 'no',
        w.mtls,
        // The trust domain is the same for every row; the namespace/service account part differs.
        w.identity.replace(/^spiffe:\/\/[^/]+\//, ''),
        w.cgroup.id ?? '-',
      ]);
      const paint = painter(c, (text, row, column) => (column === 4 && !list[row]?.enrolled ? c.dim(text) : text));
      process.stdout.write(`${table(['NAMESPACE', 'NAME', 'IP', 'NODE', 'ENROLLED', 'MTLS', 'IDENTITY', 'CGROUP'], rows, paint)}\n`);
    });
}
