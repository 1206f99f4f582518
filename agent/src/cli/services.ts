// `nodemesh services`: every Service the node knows, one row per port, with the endpoints
// that port balances over and the node each runs on, or the address of an external endpoint
// (like `istioctl ztunnel-config services`).
import type { Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import type { ServiceView } from '../admin/views.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { colours, painter, table } from './table.js';

export function servicesCommand(program: Command): void {
  program
    .command('services')
    .description('list services: VIP:port → endpoints and their nodes')
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', 'print a JSON array for scripts')
    .action(async (opts: { admin: string; json?: boolean }) => {
      const list = await adminGet<ServiceView[]>(parseAddress(opts.admin, '--admin'), '/services');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (list.length === 0) {
        process.stdout.write('no services\n');
        return;
      }
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
      process.stdout.write(`${table(['SERVICE', 'VIP:PORT', 'TARGET', 'ENDPOINTS (pod@node, or address)'], rows, paint)}\n`);
    });
}
