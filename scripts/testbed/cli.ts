// Command line for the netns testbed. `sweep` removes what crashed runs left behind
// (every nmt-* netns, nodemesh-testbed-* cgroup and /sys/fs/bpf/nodemesh/* pin dir);
// CI and the demo call it first and last.

import { Testbed } from './testbed.js';

const USAGE = 'usage: scripts/testbed.sh sweep';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'sweep' || rest.length > 0) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('testbed sweep needs root (it deletes network namespaces and cgroups)\n');
    return 1;
  }
  await Testbed.sweep();
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
