// Turns a testbed spec into a plan: every netns, interface, address and cgroup path the
// testbed will create, computed up front so building and cleaning up follow one source.

import { createHash } from 'node:crypto';
import { NodemeshError } from '../../agent/src/errors.js';

export interface PodSpec {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  serviceAccount?: string;
}

export interface NodeSpec {
  name: string;
  pods: PodSpec[];
  /**
   * Lay the pods' cgroups out as this kubelet cgroup driver does (BestEffort QoS, named by the
   * pod UID) under the node's cgroup, for agents in Kubernetes mode; default: flat
   * `<node>/<pod>` directories named in the pod's nodemesh.io/cgroup annotation.
   */
  cgroupDriver?: 'cgroupfs' | 'systemd';
}

export interface TestbedSpec {
  nodes: NodeSpec[];
  /** Labels of Kubernetes namespaces, e.g. `{ demo: { 'nodemesh.io/mode': 'enabled' } }`. */
  namespaces?: Record<string, Record<string, string>>;
}

export interface PlannedPod {
  spec: PodSpec;
  /** metadata.uid: an RFC 4122 UUID derived from the testbed id and the pod name. */
  uid: string;
  node: string;
  netns: string;
  ip: string;
  /** The veth end in the node netns, attached to cni0 (the pod side is always eth0). */
  nodeVeth: string;
}

export interface PlannedNode {
  name: string;
  netns: string;
  ip: string;
  bridgeIp: string;
  podCidr: string;
  pods: PlannedPod[];
}

export interface Plan {
  id: string;
  nodes: PlannedNode[];
  /** Set when the nodes share a bridge in their own netns (any count but two). */
  underlayNetns: string | null;
}

export const NETNS_PREFIX = 'nmt-';
export const CGROUP_PREFIX = 'nodemesh-testbed-';
export const UNDERLAY_BRIDGE = 'br0';
export const POD_BRIDGE = 'cni0';

const NAME = /^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$/;
const ID = /^[a-z0-9]{1,8}$/;
const MAX_HOSTS = 253;

export function netnsName(id: string, name: string): string {
  return `${NETNS_PREFIX}${id}-${name}`;
}

/** The underlay netns name ends with a double dash so no node or pod name can collide. */
export function underlayNetnsName(id: string): string {
  return `${NETNS_PREFIX}${id}--underlay`;
}

export function plan(spec: TestbedSpec, id: string): Plan {
  validate(spec, id);
  const nodes = spec.nodes.map((node, i): PlannedNode => ({
    name: node.name,
    netns: netnsName(id, node.name),
    ip: `10.77.0.${i + 1}`,
    bridgeIp: `10.244.${i + 1}.1`,
    podCidr: `10.244.${i + 1}.0/24`,
    pods: node.pods.map((pod, k) => ({
      spec: pod,
      uid: podUid(id, pod.name),
      node: node.name,
      netns: netnsName(id, pod.name),
      ip: `10.244.${i + 1}.${k + 2}`,
      nodeVeth: `veth${k}`,
    })),
  }));
  return { id, nodes, underlayNetns: nodes.length === 2 ? null : underlayNetnsName(id) };
}

function podUid(id: string, pod: string): string {
  const h = createHash('sha256').update(`${id}/${pod}`).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The pod's cgroup directory relative to its node's, as the node's kubelet would name it. */
export function podCgroupDir(driver: NodeSpec['cgroupDriver'], pod: PlannedPod): string {
  if (driver === 'cgroupfs') return `kubepods/besteffort/pod${pod.uid}`;
  if (driver === 'systemd') {
    return `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${pod.uid.replaceAll('-', '_')}.slice`;
  }
  return pod.spec.name;
}

function validate(spec: TestbedSpec, id: string): void {
  if (!ID.test(id)) {
    fail(`testbed id "${id}" must be 1-8 lowercase letters or digits (it prefixes netns names)`);
  }
  if (spec.nodes.length === 0 || spec.nodes.length > MAX_HOSTS) {
    fail(`a testbed needs 1 to ${MAX_HOSTS} nodes, got ${spec.nodes.length}`);
  }
  const seen = new Set<string>();
  const names = spec.nodes.flatMap((n) => [n.name, ...n.pods.map((p) => p.name)]);
  for (const name of names) {
    if (!NAME.test(name)) {
      fail(`node or pod name "${name}" must be a DNS label of at most 32 characters`);
    }
    if (seen.has(name)) {
      fail(`name "${name}" is used twice; node and pod names share one namespace in the testbed`);
    }
    seen.add(name);
  }
  for (const node of spec.nodes) {
    if (node.pods.length > MAX_HOSTS - 1) {
      fail(`node "${node.name}" has ${node.pods.length} pods; at most ${MAX_HOSTS - 1} fit its /24`);
    }
  }
}

function fail(message: string): never {
  throw new NodemeshError('NM_ERR_TESTBED_SPEC', message);
}
