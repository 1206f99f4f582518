// `nodemesh workloads`: the pods of this node as the proxy sees them (like `istioctl
// ztunnel-config workloads`): address, identity, whether captured, mTLS mode, cgroup.
import type { Command } from 'commander';
import { adminView } from './view.js';
import type { WorkloadView } from '../admin/views.js';
import { colours, painter, table } from './table.js';

export function workloadsCommand(program: Command): void {
  adminView<WorkloadView[]>(
    program
      .command('workloads')
      .description("list this node's pods: IP, identity, enrolled, mTLS mode, cgroup"),
    '/workloads',
    'print a JSON array for scripts',
    (list) => {
      if (list.length === 0) return 'no pods on this node';
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
      return table(['NAMESPACE', 'NAME', 'IP', 'NODE', 'ENROLLED', 'MTLS', 'IDENTITY', 'CGROUP'], rows, paint);
    },
  );
}
