// `nodemesh certs`: the workload identities this node holds and their certificates' state.
import type { Command } from 'commander';
import { adminView } from './view.js';
import type { IdentityStatus } from '../identity/cert-manager.js';
import { duration, table } from './table.js';

export function certsCommand(program: Command): void {
  adminView<IdentityStatus[]>(
    program
      .command('certs')
      .description('list the identities this node holds: serial, validity, state'),
    '/certs',
    'print a JSON array for scripts',
    (certs) => {
      const now = Date.now();
      const rows = certs.map((c) => [
        c.identity,
        c.serial ?? '-',
        c.notAfter ? `${c.notAfter} (${expiry(Date.parse(String(c.notAfter)) - now)})` : '-',
        c.state + (c.lastError ? `: ${c.lastError}` : ''),
      ]);
      return table(['IDENTITY', 'SERIAL', 'NOT AFTER', 'STATE'], rows);
    },
  );
}

const expiry = (ms: number) => (ms > 0 ? `in ${duration(ms)}` : `expired ${duration(-ms)} ago`);
