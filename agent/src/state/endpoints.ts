// Which pods serve a Service port, and at which pod port: the Kubernetes endpoints
// controller's rules, computed from the mesh state for the proxy's balancers.
import type { MeshPod, MeshService, MeshServicePort, MeshState } from './model.js';

export interface ServiceEndpoint {
  pod: MeshPod;
  ip: string;
  port: number;
  nodeName: string;
}

/**
 * Ready pods with an IP in the service's namespace whose labels match its selector. A named
 * targetPort resolves per pod (same name and protocol, as Kubernetes' FindPort does), so a pod
 * that lacks that port is no endpoint. A Service without a selector has no endpoints here.
 */
export function serviceEndpoints(state: MeshState, service: MeshService, port: MeshServicePort): ServiceEndpoint[] {
  const selector = service.selector;
  if (!selector) return [];
  const out: ServiceEndpoint[] = [];
  for (const pod of state.pods.values()) {
    if (pod.namespace !== service.namespace || !pod.ready || !pod.podIP) continue;
    if (!Object.entries(selector).every(([k, v]) => pod.labels[k] === v)) continue;
    const target = targetPortOf(pod, port);
    if (target !== undefined) out.push({ pod, ip: pod.podIP, port: target, nodeName: pod.nodeName });
  }
  return out;
}

function targetPortOf(pod: MeshPod, port: MeshServicePort): number | undefined {
  if (typeof port.targetPort === 'number') return port.targetPort;
  return pod.containerPorts.find((c) => c.name === port.targetPort && c.protocol === port.protocol)?.containerPort;
}
