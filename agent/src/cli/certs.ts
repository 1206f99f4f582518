// `nodemesh certs`: the workload identities this node holds and their certificates' state.
import type { Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import type { IdentityStatus } from '../identity/cert-manager.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { duration, table } from './table.js';

export function certsCommand(program: Command): void {
  program
    .command('certs')
    .description('list the identities this node holds: serial, validity, state')
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', 'print a JSON array for scripts')
    .action(async (opts: { admin: string; json?: boolean }) => {
      const certs = await adminGet<IdentityStatus[]>(parseAddress(opts.admin, '--admin'), '/certs');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(certs, null, 2)}\n`);
        return;
      }
      const now = Date.now();
      const rows = certs.map((c) => [
        c.identity,
        c.serial ?? '-',
        c.notAfter ? `${c.notAfter} (${expiry(Date.parse(String(c.notAfter)) - now)})` : '-',
        c.state + (c.lastError ? `: ${c.lastError}` : ''),
      ]);
      process.stdout.write(`${table(['IDENTITY', 'SERIAL', 'NOT AFTER', 'STATE'], rows)}\n`);
    });
}

const expiry = (ms: number) => (ms > 0 ? `in ${duration(ms)}` : `expired ${duration(-ms)} ago`);
