// The node's view of the mesh, computed once per accepted configuration so the per-connection
// path only does map lookups: which address:port is a mesh destination, which endpoints serve
// it, and which local pod a cgroup id belongs to.
import { objectKey, type MeshPod, type MeshService, type MeshServicePort, type MeshState } from './model.js';
import { serviceEndpoints, type PodEndpoint, type ServiceEndpoint } from './endpoints.js';

export type Endpoint = ServiceEndpoint;

export type ServiceDestination = { kind: 'service'; service: MeshService; port: MeshServicePort; endpoints: readonly Endpoint[] };

export type Destination = ServiceDestination | { kind: 'pod'; pod: MeshPod; port: number; endpoints: readonly PodEndpoint[] };

export interface LocalPod {
  pod: MeshPod;
  cgroupId: bigint;
}

export class MeshIndex {
  readonly state: MeshState;
  readonly nodeName: string;
  /** "ip:port" → destination, for every Service VIP port and every enrolled pod port. */
  readonly destinations: ReadonlyMap<string, Destination>;
  /** Enrolled pods on this node with a cgroup, by cgroup id. */
  readonly localPods: ReadonlyMap<bigint, LocalPod>;
  /** Every pod with an IP, by IP. */
  readonly podsByIP: ReadonlyMap<string, MeshPod>;

  /** cgroupIdOf returns undefined when the pod's cgroup directory is gone. */
  constructor(state: MeshState, nodeName: string, cgroupIdOf: (path: string) => bigint | undefined) {
    this.state = state;
    this.nodeName = nodeName;
    this.destinations = buildDestinations(state);
    this.localPods = buildLocalPods(state, nodeName, cgroupIdOf);
    this.podsByIP = new Map([...state.pods.values()].filter((p) => p.podIP).map((p) => [p.podIP as string, p]));
  }

  get node() {
    return this.state.nodes.get(this.nodeName);
  }

  destination(ip: string, port: number): Destination | undefined {
    return this.destinations.get(`${ip}:${port}`);
  }

  /** A Service port by name, as routes name their backends; undefined for headless or unknown. */
  serviceDestination(namespace: string, name: string, port: number): ServiceDestination | undefined {
    const ip = this.state.services.get(objectKey(namespace, name))?.clusterIP;
    const dest = ip ? this.destination(ip, port) : undefined;
    return dest?.kind === 'service' ? dest : undefined;
  }

}

export function isEnrolled(state: MeshState, pod: MeshPod): boolean {
  return state.namespaces.get(pod.namespace)?.enrolled === true;
}

function buildDestinations(state: MeshState): Map<string, Destination> {
  const services: Destination[] = [];
  // Ports a Service targets on a pod are mesh ports of that pod even when not declared.
  const targeted = new Map<MeshPod, Set<number>>();
  for (const service of state.services.values()) {
    for (const port of service.ports) {
      if (port.protocol !== 'TCP') continue;
      const endpoints = serviceEndpoints(state, service, port);
      for (const ep of endpoints) {
        if (ep.kind !== 'pod') continue;
        const ports = targeted.get(ep.pod) ?? new Set<number>();
        targeted.set(ep.pod, ports.add(ep.port));
      }
      if (service.clusterIP) services.push({ kind: 'service', service, port, endpoints });
    }
  }
  const out = new Map<string, Destination>();
  for (const pod of state.pods.values()) {
    if (!pod.podIP || !isEnrolled(state, pod)) continue;
    const ports = new Set(targeted.get(pod));
    for (const p of pod.containerPorts) if (p.protocol === 'TCP') ports.add(p.containerPort);
    for (const port of ports) {
      const endpoint: PodEndpoint = { kind: 'pod', pod, ip: pod.podIP, port, nodeName: pod.nodeName };
      out.set(`${pod.podIP}:${port}`, { kind: 'pod', pod, port, endpoints: pod.ready ? [endpoint] : [] });
    }
  }
  // A Service's view wins should a VIP ever equal a pod IP.
  for (const d of services) {
    if (d.kind === 'service') out.set(`${d.service.clusterIP}:${d.port.port}`, d);
  }
  return out;
}

function buildLocalPods(
  state: MeshState,
  nodeName: string,
  cgroupIdOf: (path: string) => bigint | undefined,
): Map<bigint, LocalPod> {
  const out = new Map<bigint, LocalPod>();
  for (const pod of state.pods.values()) {
    if (pod.nodeName !== nodeName || !pod.cgroupPath || !pod.podIP || !isEnrolled(state, pod)) continue;
    const cgroupId = cgroupIdOf(pod.cgroupPath);
    if (cgroupId !== undefined) out.set(cgroupId, { pod, cgroupId });
  }
  return out;
}

export const podName = (pod: MeshPod): string => objectKey(pod.namespace, pod.name);
