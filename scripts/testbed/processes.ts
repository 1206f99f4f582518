// Processes inside the testbed: argv wrappers that enter a node's netns, or a pod's cgroup
// and netns, and a tracker that bounds exec() in time and kills everything on destroy.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { netnsPath } from './host.js';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  timeoutMs?: number;
  input?: string;
  env?: Record<string, string>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
}

const DEFAULT_EXEC_TIMEOUT_MS = 15_000;
const EXIT_WAIT_MS = 2_000;

/** A node's host: its netns, in no pod cgroup. */
export function inNode(netns: string, argv: string[]): string[] {
  return ['nsenter', `--net=${netnsPath(netns)}`, '--', ...argv];
}

/**
 * A pod: join its cgroup while still outside the netns (`ip netns exec` would remount
 * /sys and hide cgroupfs), then enter the netns and exec the command in the same process.
 */
export function inPod(cgroup: string, netns: string, argv: string[]): string[] {
  const script = 'echo $$ > "$1/cgroup.procs" && ns="$2" && shift 2 && exec nsenter --net="$ns" -- "$@"';
  return ['sh', '-c', script, 'sh', cgroup, netnsPath(netns), ...argv];
}

export class ProcessTracker {
  #live = new Set<ChildProcess>();

  /** Each child leads its own process group so a kill reaches what it started, too. */
  spawn(argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const [file, ...args] = argv as [string, ...string[]];
    const child = spawn(file, args, {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd,
    });
    this.#live.add(child);
    child.once('exit', () => this.#live.delete(child));
    child.once('error', () => this.#live.delete(child));
    return child;
  }

  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const child = this.spawn(argv, { env: opts.env ?? {} });
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(opts.input ?? '');
    return new Promise((resolve) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child);
      }, timeoutMs);
      const finish = (code: number, extra = ''): void => {
        clearTimeout(timer);
        if (timedOut) {
          extra += `[testbed] \`${argv.join(' ')}\` killed after ${timeoutMs} ms\n`;
        }
        resolve({ code, stdout, stderr: stderr + extra, timedOut });
      };
      child.once('error', (error) => finish(127, `[testbed] cannot start ${argv[0]}: ${error.message}\n`));
      child.once('close', (code, signal) => finish(code ?? (signal === null ? 1 : 128 + signalNumber(signal))));
    });
  }

  /** Synchronous so it can run from a process 'exit' handler. */
  killAll(): void {
    this.#live.forEach(killGroup);
  }

  async killAllAndWait(): Promise<void> {
    const exits = [...this.#live].map((child) => waitExit(child));
    this.killAll();
    await Promise.all(exits);
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // The group is gone already.
  }
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, EXIT_WAIT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  return (constants.signals as Record<string, number>)[signal] ?? 0;
}
