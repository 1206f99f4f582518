#!/usr/bin/env node
// The `nodemesh` executable: one program, a subcommand per job.
import { Command, CommanderError } from 'commander';
import { NodemeshError } from '../errors.js';
import { agentCommand } from './agent.js';
import { certsCommand } from './certs.js';
import { configCommand } from './config.js';
import { controllerCommand } from './controller.js';
import { flowsCommand } from './flows.js';
import { servicesCommand } from './services.js';
import { statusCommand } from './status.js';
import { tapCommand } from './tap.js';
import { topCommand } from './top.js';
import { workloadsCommand } from './workloads.js';

const program = new Command('nodemesh')
  .description('nodemesh: a sidecarless service mesh, one eBPF-fed proxy per node')
  .showHelpAfterError()
  .exitOverride();
agentCommand(program);
controllerCommand(program);
flowsCommand(program);
topCommand(program);
tapCommand(program);
statusCommand(program);
certsCommand(program);
workloadsCommand(program);
servicesCommand(program);
configCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  if (err instanceof NodemeshError) {
    process.stderr.write(`nodemesh: ${err.message} [${err.code}]\n`);
  } else {
    process.stderr.write(`nodemesh: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
}
