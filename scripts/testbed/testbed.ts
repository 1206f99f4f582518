// The netns testbed: Kubernetes-like nodes and pods made of network namespaces, veths,
// bridges and cgroup v2 directories, for integration tests, the demo and the benchmark.
// See DESIGN.md "The testbed"; addresses and names come from topology.ts.

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { onProcessEnd } from './exit-hooks.js';
import { cgroup2Mount, netnsPath, removeSelected } from './host.js';
import { buildNetwork } from './network.js';
import { kubeObjects, POD_PORTS, stringifyDocs } from './node-yaml.js';
import { inNode, inPod, ProcessTracker, type ExecOptions, type ExecResult, type SpawnOptions } from './processes.js';
import { NodemeshError } from '../../agent/src/errors.js';
import { CGROUP_PREFIX, NETNS_PREFIX, plan, podCgroupDir, type Plan, type PlannedNode, type PlannedPod, type TestbedSpec } from './topology.js';

export type { ExecOptions, ExecResult, SpawnOptions } from './processes.js';
export type { NodeSpec, PodSpec, TestbedSpec } from './topology.js';
export { POD_CGROUP_ANNOTATION, POD_PORTS } from './node-yaml.js';

export type Where = { pod: string } | { node: string };

const SERVER_READY_TIMEOUT_MS = 10_000;
// Compiled to dist/scripts/testbed/; the .mjs fixtures are not compiled and stay in test/.
const FIXTURES_DIR = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

/** Absolute path of a fixture script, e.g. `fixturePath('tcp-client.mjs')`. */
export function fixturePath(name: string): string {
  return join(FIXTURES_DIR, name);
}

export class Testbed {
  readonly id: string;
  #spec: TestbedSpec;
  #plan: Plan;
  #cgroupRoot: string;
  #processes = new ProcessTracker();
  #destroyed = false;
  #unhook: () => void;

  private constructor(spec: TestbedSpec, topology: Plan, cgroupRoot: string) {
    this.id = topology.id;
    this.#spec = spec;
    this.#plan = topology;
    this.#cgroupRoot = cgroupRoot;
    this.#unhook = onProcessEnd(() => this.#destroySync());
  }

  /** Builds the whole testbed, or removes whatever it had built and rethrows. */
  static async create(spec: TestbedSpec, opts: { id?: string } = {}): Promise<Testbed> {
    const topology = plan(spec, opts.id ?? randomBytes(3).toString('hex'));
    const testbed = new Testbed(spec, topology, join(cgroup2Mount(), CGROUP_PREFIX + topology.id));
    try {
      testbed.#makeCgroups();
      await buildNetwork(topology);
      return testbed;
    } catch (error) {
      await testbed.destroy();
      throw error;
    }
  }

  /**
   * Removes every testbed netns, cgroup tree and /sys/fs/bpf/nodemesh dir left by crashed
   * runs. It takes all ids, live ones too: call it only when no other testbed is running.
   */
  static async sweep(): Promise<void> {
    removeSelected({
      netns: (name) => name.startsWith(NETNS_PREFIX),
      cgroup: (name) => name.startsWith(CGROUP_PREFIX),
      bpfPin: () => true,
      scratch: (name) => name.startsWith(CGROUP_PREFIX),
    });
  }

  /** A directory for this testbed's files (configs, the mesh CA), removed by destroy(). */
  get scratchDir(): string {
    const dir = join(tmpdir(), CGROUP_PREFIX + this.id);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  nodeIP(node: string): string {
    return this.#node(node).ip;
  }

  podIP(pod: string): string {
    return this.#pod(pod).ip;
  }

  /**
   * The pod's cgroup v2 directory under its node's: `<mount>/nodemesh-testbed-<id>/<node>/<pod>`,
   * or the kubelet's layout for the node's cgroupDriver.
   */
  podCgroup(pod: string): string {
    const planned = this.#pod(pod);
    const driver = this.#spec.nodes.find((n) => n.name === planned.node)?.cgroupDriver;
    return join(this.nodeCgroup(planned.node), podCgroupDir(driver, planned));
  }

  podUid(pod: string): string {
    return this.#pod(pod).uid;
  }

  /** The node's cgroup v2 directory: the agent's --cgroup-root. */
  nodeCgroup(node: string): string {
    return join(this.#cgroupRoot, this.#node(node).name);
  }

  netnsPath(nodeOrPod: string): string {
    const node = this.#plan.nodes.find((n) => n.name === nodeOrPod);
    return netnsPath(node !== undefined ? node.netns : this.#pod(nodeOrPod).netns);
  }

  /** Runs argv in a pod (its netns and cgroup) or on a node's host (its netns), bounded in time. */
  exec(where: Where, argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.#processes.exec(this.#wrap(where, argv), opts);
  }

  /** Starts a long-running process in a pod or on a node's host; killed by destroy(). */
  spawn(where: Where, argv: string[], opts?: SpawnOptions): ChildProcess {
    return this.#processes.spawn(this.#wrap(where, argv), opts);
  }

  /** Starts a process on a node's host (no pod cgroup), e.g. the node's agent. */
  spawnInNode(node: string, argv: string[], env?: Record<string, string>): ChildProcess {
    return this.spawn({ node }, argv, env === undefined ? {} : { env });
  }

  /** Starts test/fixtures/pod-server.mjs in the pod and resolves once it listens. */
  async startServer(pod: string, opts: { httpPort?: number; echoPort?: number } = {}): Promise<ChildProcess> {
    const argv = [
      process.execPath,
      fixturePath('pod-server.mjs'),
      '--name', pod,
      '--http-port', String(opts.httpPort ?? POD_PORTS.http),
      '--echo-port', String(opts.echoPort ?? POD_PORTS.echo),
    ];
    const child = this.spawn({ pod }, argv);
    await waitReady(child, `pod-server in pod "${pod}"`);
    return child;
  }

  /**
   * Starts a Node fixture of test/fixtures in the pod (e.g. `http-backend.mjs`) and resolves
   * once it prints "ready", as every fixture server does; killed by destroy().
   */
  async startFixture(pod: string, script: string, args: string[] = []): Promise<ChildProcess> {
    const child = this.spawn({ pod }, [process.execPath, fixturePath(script), ...args]);
    await waitReady(child, `${script} in pod "${pod}"`);
    return child;
  }

  /** Starts a fixture on a node's host (its netns, no pod cgroup), e.g. a collector the node's
   * agent reports to; resolves once it prints "ready"; killed by destroy(). */
  async startNodeFixture(node: string, script: string, args: string[] = []): Promise<ChildProcess> {
    const child = this.spawn({ node }, [process.execPath, fixturePath(script), ...args]);
    await waitReady(child, `${script} on node "${node}"`);
    return child;
  }

  /** Node, Namespace and Pod documents for the agent's standalone config. */
  nodeYaml(): string {
    return stringifyDocs(this.kubeObjects({ cgroupAnnotations: true }));
  }

  /**
   * The testbed's Node, Namespace and Pod objects as Kubernetes holds them (with UIDs and QoS
   * class); with cgroupAnnotations, each pod also names its cgroup for a standalone agent.
   */
  kubeObjects(opts: { cgroupAnnotations: boolean }): Array<Record<string, unknown>> {
    return kubeObjects(this.#spec, this.#plan, opts.cgroupAnnotations ? (pod) => this.podCgroup(pod) : undefined);
  }

  /** Kills every process of the testbed and removes its netns, cgroups and pins. Idempotent. */
  async destroy(): Promise<void> {
    await this.#processes.killAllAndWait();
    this.#destroySync();
  }

  #destroySync(): void {
    this.#destroyed = true;
    this.#processes.killAll();
    removeSelected({
      netns: (name) => name.startsWith(`${NETNS_PREFIX}${this.id}-`),
      cgroup: (name) => name === CGROUP_PREFIX + this.id,
      bpfPin: (name) => name.startsWith(`${this.id}-`),
      scratch: (name) => name === CGROUP_PREFIX + this.id,
    });
    this.#unhook();
  }

  #makeCgroups(): void {
    for (const node of this.#plan.nodes) {
      for (const pod of node.pods) {
        mkdirSync(this.podCgroup(pod.spec.name), { recursive: true });
      }
      mkdirSync(this.nodeCgroup(node.name), { recursive: true });
    }
  }

  #wrap(where: Where, argv: string[]): string[] {
    if (this.#destroyed) {
      throw new NodemeshError('NM_ERR_TESTBED_DESTROYED', `testbed ${this.id} is destroyed; create a new one`);
    }
    if ('pod' in where) {
      return inPod(this.podCgroup(where.pod), this.#pod(where.pod).netns, argv);
    }
    return inNode(this.#node(where.node).netns, argv);
  }

  #node(name: string): PlannedNode {
    const node = this.#plan.nodes.find((n) => n.name === name);
    if (node === undefined) {
      throw new NodemeshError('NM_ERR_TESTBED_UNKNOWN', `no node "${name}" in testbed ${this.id}`);
    }
    return node;
  }

  #pod(name: string): PlannedPod {
    const pod = this.#plan.nodes.flatMap((n) => n.pods).find((p) => p.spec.name === name);
    if (pod === undefined) {
      throw new NodemeshError('NM_ERR_TESTBED_UNKNOWN', `no pod "${name}" in testbed ${this.id}`);
    }
    return pod;
  }
}

function waitReady(child: ChildProcess, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const onStderr = (chunk: string): void => {
      stderr += chunk;
    };
    const onStdout = (chunk: string): void => {
      stdout += chunk;
      if (/^ready$/m.test(stdout)) {
        settle();
        resolve();
      }
    };
    const onExit = (code: number | null, signal: string | null): void => fail(`exited (${signal ?? code}) before it was ready`);
    const timer = setTimeout(() => fail(`did not print "ready" within ${SERVER_READY_TIMEOUT_MS} ms`), SERVER_READY_TIMEOUT_MS);
    const settle = (): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      child.stdout?.off('data', onStdout).resume();
      child.stderr?.off('data', onStderr).resume();
    };
    const fail = (why: string): void => {
      settle();
      child.kill('SIGKILL');
      reject(new NodemeshError('NM_ERR_TESTBED_SERVER', `${what} ${why}; stderr: ${stderr.trim() || '(empty)'}`));
    };
    child.stdout?.setEncoding('utf8').on('data', onStdout);
    child.stderr?.setEncoding('utf8').on('data', onStderr);
    child.once('exit', onExit);
  });
}
