// Describes a testbed in Kubernetes shapes (Node, Namespace, Pod): for the agent's standalone
// config, or for the API server double the controller watches, so either way the agent sees
// the topology it would get from a real cluster.

import { stringify } from 'yaml';
import type { Plan, TestbedSpec } from './topology.js';

export const POD_CGROUP_ANNOTATION = 'nodemesh.io/cgroup';
export const POD_PORTS = { http: 8080, echo: 9000 } as const;

/** podCgroup: name each pod's cgroup in the nodemesh.io/cgroup annotation (standalone mode). */
export function kubeObjects(spec: TestbedSpec, plan: Plan, podCgroup?: (pod: string) => string): Array<Record<string, unknown>> {
  const nodes = plan.nodes.map((node) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node.name },
    spec: { podCIDR: node.podCidr },
    status: { addresses: [{ type: 'InternalIP', address: node.ip }] },
  }));
  const pods = plan.nodes.flatMap((node) =>
    node.pods.map((pod) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: pod.spec.name,
        namespace: pod.spec.namespace,
        uid: pod.uid,
        labels: pod.spec.labels ?? {},
        ...(podCgroup && { annotations: { [POD_CGROUP_ANNOTATION]: podCgroup(pod.spec.name) } }),
      },
      spec: {
        nodeName: node.name,
        serviceAccountName: pod.spec.serviceAccount ?? 'default',
        containers: [
          {
            name: 'app',
            image: 'nodemesh/pod-server',
            ports: Object.entries(POD_PORTS).map(([name, containerPort]) => ({ name, containerPort, protocol: 'TCP' })),
          },
        ],
      },
      status: {
        phase: 'Running',
        hostIP: node.ip,
        podIP: pod.ip,
        podIPs: [{ ip: pod.ip }],
        conditions: [{ type: 'Ready', status: 'True' }],
        qosClass: 'BestEffort',
      },
    })),
  );
  const namespaceNames = new Set([
    ...Object.keys(spec.namespaces ?? {}),
    ...plan.nodes.flatMap((n) => n.pods.map((p) => p.spec.namespace)),
  ]);
  const namespaces = [...namespaceNames].sort().map((name) => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: spec.namespaces?.[name] ?? {} },
  }));
  return [...nodes, ...namespaces, ...pods];
}

export const stringifyDocs = (docs: readonly unknown[]): string => docs.map((doc) => stringify(doc)).join('---\n');
