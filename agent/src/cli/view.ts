// The shape every read-only CLI view shares: GET one path of the agent's admin API (--admin),
// print it as JSON for scripts (--json) or rendered for people.
import type { Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import { ADMIN_DEFAULT } from './defaults.js';

export function adminView<T>(command: Command, path: string, jsonHelp: string, render: (view: T) => string): Command {
  return command
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', jsonHelp)
    .action(async (opts: { admin: string; json?: boolean }) => {
      const view = await adminGet<T>(parseAddress(opts.admin, '--admin'), path);
      process.stdout.write(`${opts.json ? JSON.stringify(view, null, 2) : render(view)}\n`);
    });
}
