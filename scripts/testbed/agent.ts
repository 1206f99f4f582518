// Runs a real `nodemesh agent` inside a testbed node's network namespace and talks to it
// through the real CLI, as an operator on that node would.
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { Testbed } from './testbed.js';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../agent/src/cli/main.js');

export class AgentProcess {
  readonly node: string;
  readonly bpffs: string;
  readonly #tb: Testbed;
  #child: ChildProcess | undefined;
  #output = '';

  readonly #extraArgs: string[];
  readonly #inNodeCgroup: boolean;

  /**
   * `inNodeCgroup`: run the agent inside the node's cgroup, i.e. inside the subtree its own
   * programs are attached to, as a DaemonSet pod is when --cgroup-root is the whole host
   * (the default); otherwise it runs outside, in the test's cgroup.
   */
  constructor(tb: Testbed, node: string, extraArgs: string[] = [], opts: { inNodeCgroup?: boolean } = {}) {
    this.#tb = tb;
    this.node = node;
    this.#extraArgs = extraArgs;
    this.#inNodeCgroup = opts.inNodeCgroup ?? false;
    this.bpffs = `/sys/fs/bpf/nodemesh/${tb.id}-${node}`;
  }

  /** The agent's process id (nsenter execs the agent in place). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Everything the running agent wrote since its last start (JSON log lines and errors). */
  get output(): string {
    return this.#output;
  }

  /** Standalone mode: follows the YAML file; resolves once the agent is ready. */
  async start(configPath: string): Promise<void> {
    await this.#launch([
      '--config',
      configPath,
      // Every node of one mesh trusts one root: the first agent creates it, the others load it.
      '--ca-dir',
      path.join(this.#tb.scratchDir, 'ca'),
    ]);
  }

  /**
   * Kubernetes mode: follows the controller's config stream. `ready: false` returns as soon as
   * the process runs (an agent with neither controller nor snapshot waits for the controller).
   */
  async startWithController(opts: { controller: string; controllerCa: string; tokenFile: string; stateDir: string; ready?: boolean }): Promise<void> {
    const args = ['--controller', opts.controller, '--controller-ca', opts.controllerCa, '--token-file', opts.tokenFile, '--state-dir', opts.stateDir];
    await this.#launch(args, opts.ready ?? true);
  }

  async #launch(sourceArgs: string[], waitReady = true): Promise<void> {
    // nsenter --net leaves /sys as it is (unlike `ip netns exec`): the shell can join the
    // cgroup from inside the node's netns, then exec the agent in place.
    const joinCgroup = this.#inNodeCgroup ? ['sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', this.#tb.nodeCgroup(this.node)] : [];
    const child = this.#tb.spawnInNode(this.node, [
      ...joinCgroup,
      process.execPath,
      CLI,
      'agent',
      ...sourceArgs,
      '--node',
      this.node,
      '--cgroup-root',
      this.#tb.nodeCgroup(this.node),
      '--bpffs',
      this.bpffs,
      ...this.#extraArgs,
    ]);
    this.#child = child;
    this.#output = '';
    const collect = (chunk: Buffer) => (this.#output += chunk.toString());
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    if (!waitReady) return;
    await this.waitFor('agent ready', 20_000);
  }

  /** Whether the agent process is running. */
  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Waits until the agent's output contains `text`; fails if the agent exits first. */
  async waitFor(text: string, timeoutMs: number): Promise<void> {
    const child = this.#child;
    const deadline = Date.now() + timeoutMs;
    while (!this.#output.includes(text)) {
      if (!child || child.exitCode !== null) throw new Error(`agent on ${this.node} exited ${child?.exitCode}:\n${this.#output}`);
      if (Date.now() > deadline) throw new Error(`agent on ${this.node}: no "${text}" within ${timeoutMs} ms:\n${this.#output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, as the kubelet does; resolves when the process has exited. */
  async stop(): Promise<number | null> {
    const child = this.#child;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
    return child.exitCode;
  }

  /** Stops the agent and removes what it pinned and attached (`nodemesh agent --cleanup`). */
  async remove(): Promise<void> {
    await this.stop();
    await this.cli(['agent', '--cleanup', '--bpffs', this.bpffs]);
  }

  /** Runs `nodemesh <args>` in this node's network namespace. */
  async cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.#tb.exec({ node: this.node }, [process.execPath, CLI, ...args]);
  }

  async json<T>(args: string[]): Promise<T> {
    const r = await this.cli([...args, '--json']);
    if (r.code !== 0) throw new Error(`nodemesh ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Polls until check returns a value (not undefined) or the bounded wait ends. */
  async until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Source fixtures are plain .mjs files, run from the source tree. */
export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures');
