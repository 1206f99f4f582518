// Which endpoints serve a Service port: for a Service with a selector, its pods (the
// Kubernetes endpoints controller's rules); without one, its EndpointSlices (kube-proxy's).
// Computed from the mesh state for the proxy's balancers.
import { objectKey, type MeshEndpointSlice, type MeshPod, type MeshService, type MeshServicePort, type MeshState } from './model.js';

/** A pod of the mesh state: reached through its node's proxy (HBONE, or in-process on this node). */
export interface PodEndpoint {
  kind: 'pod';
  pod: MeshPod;
  ip: string;
  port: number;
  nodeName: string;
}

/** An EndpointSlice address that is no known pod: dialled from this node, in plaintext. */
export interface ExternalEndpoint {
  kind: 'external';
  ip: string;
  port: number;
}

export type ServiceEndpoint = PodEndpoint | ExternalEndpoint;

export function serviceEndpoints(state: MeshState, service: MeshService, port: MeshServicePort): ServiceEndpoint[] {
  return service.selector ? selectedPods(state, service, service.selector, port) : sliceEndpoints(state, service, port);
}

/**
 * Ready pods with an IP in the service's namespace whose labels match its selector. A named
 * targetPort resolves per pod (same name and protocol, as Kubernetes' FindPort does), so a pod
 * that lacks that port is no endpoint.
 */
function selectedPods(state: MeshState, service: MeshService, selector: Readonly<Record<string, string>>, port: MeshServicePort): PodEndpoint[] {
  const out: PodEndpoint[] = [];
  for (const pod of state.pods.values()) {
    if (pod.namespace !== service.namespace || !pod.ready || !pod.podIP) continue;
    if (!Object.entries(selector).every(([k, v]) => pod.labels[k] === v)) continue;
    const target = targetPortOf(pod, port);
    if (target !== undefined) out.push({ kind: 'pod', pod, ip: pod.podIP, port: target, nodeName: pod.nodeName });
  }
  return out;
}

function targetPortOf(pod: MeshPod, port: MeshServicePort): number | undefined {
  if (typeof port.targetPort === 'number') return port.targetPort;
  return pod.containerPorts.find((c) => c.name === port.targetPort && c.protocol === port.protocol)?.containerPort;
}

/**
 * Ready endpoints of the Service's slices, on the slice port of the Service port's name and
 * protocol (the unnamed port matches the unnamed one), each address:port once. An address
 * that is a known pod's IP is that pod, whatever its targetRef says (or without one), so that
 * it is reached through the mesh as a mesh pod must be; any other address is external.
 */
function sliceEndpoints(state: MeshState, service: MeshService, port: MeshServicePort): ServiceEndpoint[] {
  const out = new Map<string, ServiceEndpoint>();
  for (const slice of slicesOf(state).get(objectKey(service.namespace, service.name)) ?? []) {
    const target = slice.ports.find((p) => p.name === (port.name ?? '') && p.protocol === port.protocol)?.port;
    if (target === undefined) continue;
    for (const e of slice.endpoints) {
      if (!e.ready || out.has(`${e.address}:${target}`)) continue;
      const pod = podsOf(state).get(e.address);
      const endpoint: ServiceEndpoint = pod
        ? { kind: 'pod', pod, ip: e.address, port: target, nodeName: pod.nodeName }
        : { kind: 'external', ip: e.address, port: target };
      out.set(`${e.address}:${target}`, endpoint);
    }
  }
  return [...out.values()];
}

/** Slices by the Service they belong to ("namespace/name"), in name order; once per state. */
const slicesByService = new WeakMap<MeshState, Map<string, MeshEndpointSlice[]>>();

function slicesOf(state: MeshState): Map<string, MeshEndpointSlice[]> {
  let index = slicesByService.get(state);
  if (!index) {
    index = new Map();
    const sorted = [...state.endpointSlices.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const slice of sorted) {
      const key = objectKey(slice.namespace, slice.serviceName);
      const list = index.get(key) ?? [];
      index.set(key, list);
      list.push(slice);
    }
    slicesByService.set(state, index);
  }
  return index;
}

/** Pods by IP; once per state. */
const podsByIP = new WeakMap<MeshState, Map<string, MeshPod>>();

function podsOf(state: MeshState): Map<string, MeshPod> {
  let index = podsByIP.get(state);
  if (!index) {
    index = new Map();
    for (const pod of state.pods.values()) if (pod.podIP) index.set(pod.podIP, pod);
    podsByIP.set(state, index);
  }
  return index;
}
