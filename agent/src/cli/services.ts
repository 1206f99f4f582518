// `nodemesh services`: every Service the node knows, one row per port, with the endpoints
// that port balances over and the node each runs on, or the address of an external endpoint
// (like `istioctl ztunnel-config services`).
import type { Command } from 'commander';
import { adminView } from './view.js';
import type { ServiceView } from '../admin/views.js';
import { colours, painter, table } from './table.js';

export function servicesCommand(program: Command): void {
  adminView<ServiceView[]>(
    program
      .command('services')
      .description('list services: VIP:port → endpoints and their nodes'),
    '/services',
    'print a JSON array for scripts',
    (list) => {
      if (list.length === 0) return 'no services';
      const rows = list.flatMap((s) =>
        s.ports.map((p) => [
          `${s.namespace}/${s.name}`,
          `${s.clusterIP ?? 'None'}:${p.port}`,
          String(p.targetPort),
          p.endpoints.length === 0 ? 'none' : p.endpoints.map((e) => (e.pod ? `${e.pod.slice(e.pod.indexOf('/') + 1)}@${e.node}` : `${e.ip}:${e.port} (external)`)).join(', '),
        ]),
      );
      const c = colours();
      const paint = painter(c, (text, _row, column) => (column === 3 && text === 'none' ? c.red(text) : text));
      return table(['SERVICE', 'VIP:PORT', 'TARGET', 'ENDPOINTS (pod@node, or address)'], rows, paint);
    },
  );
}
