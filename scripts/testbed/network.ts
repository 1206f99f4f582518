// Builds the testbed network from a plan: netns per node and pod, an underlay between
// nodes (one veth pair for two nodes, else a bridge in its own netns), a cni0 bridge per
// node and a veth per pod. Nodes route pod CIDRs over the underlay and have no default
// route, so an address nobody redirected fails with "network unreachable" at once.

import { netnsPath, run } from './host.js';
import { POD_BRIDGE, UNDERLAY_BRIDGE, type Plan, type PlannedNode, type PlannedPod } from './topology.js';

export async function buildNetwork(plan: Plan): Promise<void> {
  const namespaces = [
    ...(plan.underlayNetns === null ? [] : [plan.underlayNetns]),
    ...plan.nodes.flatMap((n) => [n.netns, ...n.pods.map((p) => p.netns)]),
  ];
  for (const ns of namespaces) {
    await run(['ip', 'netns', 'add', ns]);
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  await buildUnderlay(plan);
  for (const node of plan.nodes) {
    await buildNode(node, plan.nodes);
    for (const pod of node.pods) {
      await buildPod(node, pod);
    }
  }
}

async function buildUnderlay(plan: Plan): Promise<void> {
  if (plan.underlayNetns === null) {
    const [first, second] = plan.nodes as [PlannedNode, PlannedNode];
    await run(['ip', 'link', 'add', 'eth0', 'netns', first.netns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', second.netns]);
    return;
  }
  const underlay = plan.underlayNetns;
  await run(['ip', '-n', underlay, 'link', 'add', UNDERLAY_BRIDGE, 'type', 'bridge']);
  await run(['ip', '-n', underlay, 'link', 'set', UNDERLAY_BRIDGE, 'up']);
  for (const [i, node] of plan.nodes.entries()) {
    const port = `n${i}`;
    await run(['ip', 'link', 'add', 'eth0', 'netns', node.netns, 'type', 'veth', 'peer', 'name', port, 'netns', underlay]);
    await run(['ip', '-n', underlay, 'link', 'set', port, 'master', UNDERLAY_BRIDGE, 'up']);
  }
}

async function buildNode(node: PlannedNode, all: PlannedNode[]): Promise<void> {
  const ns = node.netns;
  await run(['ip', '-n', ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0']);
  await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  await run(['ip', '-n', ns, 'link', 'add', POD_BRIDGE, 'type', 'bridge']);
  await run(['ip', '-n', ns, 'addr', 'add', `${node.bridgeIp}/24`, 'dev', POD_BRIDGE]);
  await run(['ip', '-n', ns, 'link', 'set', POD_BRIDGE, 'up']);
  // sysctl through nsenter, not `ip netns exec`: /proc/sys/net follows the network netns.
  await run(['nsenter', `--net=${netnsPath(ns)}`, '--', 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  for (const other of all) {
    if (other !== node) {
      await run(['ip', '-n', ns, 'route', 'add', other.podCidr, 'via', other.ip, 'dev', 'eth0']);
    }
  }
}

async function buildPod(node: PlannedNode, pod: PlannedPod): Promise<void> {
  await run(['ip', 'link', 'add', 'eth0', 'netns', pod.netns, 'type', 'veth', 'peer', 'name', pod.nodeVeth, 'netns', node.netns]);
  await run(['ip', '-n', node.netns, 'link', 'set', pod.nodeVeth, 'master', POD_BRIDGE, 'up']);
  await run(['ip', '-n', pod.netns, 'addr', 'add', `${pod.ip}/24`, 'dev', 'eth0']);
  await run(['ip', '-n', pod.netns, 'link', 'set', 'eth0', 'up']);
  await run(['ip', '-n', pod.netns, 'route', 'add', 'default', 'via', node.bridgeIp]);
}
