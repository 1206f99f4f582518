// The node's state as the proxy holds it, shaped for `nodemesh workloads`, `services` and
// `config dump` (what `istioctl ztunnel-config` shows for ztunnel): plain JSON the CLI prints.
import { workloadIdentity } from '../control/apply-state.js';
import { mtlsMode, type EffectiveMtlsMode } from '../policy/index.js';
import type { MeshIndex } from '../state/mesh-index.js';
import { serviceEndpoints } from '../state/endpoints.js';
import { flowEndpoint, type FlowEndpoint } from '../telemetry/flow-table.js';
import { workloadOf } from '../telemetry/peers.js';

export interface WorkloadView {
  namespace: string;
  name: string;
  ip: string | null;
  node: string;
  identity: string;
  /** Istio's workload name and canonical service/revision, as the metrics label it. */
  workload: string;
  canonicalService: string;
  canonicalRevision: string;
  /** Namespace enrolled and the pod's cgroup found: its connections are captured. */
  enrolled: boolean;
  /** Why an enrolled-namespace pod is not captured. */
  notCapturedReason?: string;
  mtls: EffectiveMtlsMode;
  cgroup: { path: string | null; id: string | null };
}

export interface ServiceView {
  namespace: string;
  name: string;
  clusterIP: string | null;
  ports: Array<{
    name: string | null;
    port: number;
    targetPort: number | string;
    protocol: string;
    /** pod and node are null for an external endpoint (an EndpointSlice address outside the mesh). */
    endpoints: FlowEndpoint[];
  }>;
}

/** Pods scheduled on this node, captured or not. */
export function workloads(view: MeshIndex, trustDomain: string): WorkloadView[] {
  const captured = new Map([...view.localPods.values()].map((l) => [l.pod, l.cgroupId]));
  const out: WorkloadView[] = [];
  for (const pod of view.state.pods.values()) {
    if (pod.nodeName !== view.nodeName) continue;
    const id = captured.get(pod);
    const namespaceEnrolled = view.state.namespaces.get(pod.namespace)?.enrolled === true;
    const w = workloadOf(pod);
    out.push({
      namespace: pod.namespace,
      name: pod.name,
      ip: pod.podIP ?? null,
      node: pod.nodeName,
      identity: workloadIdentity(pod, trustDomain),
      workload: w.name,
      canonicalService: w.canonicalService,
      canonicalRevision: w.canonicalRevision,
      enrolled: id !== undefined,
      ...(namespaceEnrolled && id === undefined ? { notCapturedReason: !pod.podIP ? 'no pod IP yet' : !pod.cgroupPath ? 'no cgroup annotation' : 'cgroup not found' } : {}),
      mtls: mtlsMode(view.state, pod, 0),
      cgroup: { path: pod.cgroupPath ?? null, id: id === undefined ? null : id.toString() },
    });
  }
  return out.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

/** Every Service, its ports and the ready endpoints each port sends to. */
export function services(view: MeshIndex): ServiceView[] {
  const { state } = view;
  return [...state.services.values()]
    .map((s) => ({
      namespace: s.namespace,
      name: s.name,
      clusterIP: s.clusterIP,
      ports: s.ports.map((p) => ({
        name: p.name ?? null,
        port: p.port,
        targetPort: p.targetPort,
        protocol: p.protocol,
        endpoints: serviceEndpoints(state, s, p).map(flowEndpoint),
      })),
    }))
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
}

/** The accepted configuration, every kind as a list, plus what the last update rejected. */
export function configDump(view: MeshIndex, source: string) {
  const { state } = view;
  return {
    source,
    version: state.version,
    node: view.nodeName,
    nodes: [...state.nodes.values()],
    namespaces: [...state.namespaces.values()],
    pods: [...state.pods.values()],
    services: [...state.services.values()],
    endpointSlices: [...state.endpointSlices.values()],
    authorizationPolicies: [...state.authorizationPolicies.values()],
    peerAuthentications: [...state.peerAuthentications.values()],
    httpRoutes: [...state.httpRoutes.values()],
    grpcRoutes: [...state.grpcRoutes.values()],
    destinationRules: [...state.destinationRules.values()],
    faultInjections: [...state.faultInjections.values()],
    localRateLimits: [...state.localRateLimits.values()],
    rejections: state.rejections,
  };
}

export type ConfigDump = ReturnType<typeof configDump>;
