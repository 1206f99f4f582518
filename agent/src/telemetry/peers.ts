// Who was at each end of a connection or request, in Istio's terms (workload, canonical
// service and revision, principal, service FQDN): shared by the Istio metrics and the access
// log so both name a connection or request the same way.
import { formatSpiffeId, parseSpiffeId } from '../identity/spiffe.js';
import type { MeshIndex, ServiceDestination } from '../state/mesh-index.js';
import type { MeshPod, MeshService } from '../state/model.js';
import type { ProxyFlow } from './flow-table.js';
import type { RequestRecord } from './request-record.js';

/** The Kubernetes cluster DNS domain of service FQDNs (not the SPIFFE trust domain). */
export const CLUSTER_DOMAIN = 'cluster.local';

export interface Workload {
  /** `service.istio.io/workload-name`, else the pod name (see workloadOf). */
  name: string;
  namespace: string;
  pod: string;
  canonicalService: string;
  canonicalRevision: string;
}

export interface Peer {
  workload?: Workload;
  /** Known even without a workload when the peer's identity is (its SPIFFE id names it). */
  namespace?: string;
  /** SPIFFE id, e.g. spiffe://cluster.local/ns/shop/sa/client. */
  principal?: string;
}

/** A Service by name: what a request record carries, and all its labels need. */
export type ServiceName = Pick<MeshService, 'namespace' | 'name'>;

export interface FlowPeers {
  source: Peer;
  destination: Peer;
  service?: ServiceName;
}

// istio/istio pkg/model: labels.CanonicalService's lookup order.
const NAME_LABELS = ['service.istio.io/canonical-name', 'app.kubernetes.io/name', 'app'];
const REVISION_LABELS = ['service.istio.io/canonical-revision', 'app.kubernetes.io/version', 'version'];

const firstLabel = (labels: Readonly<Record<string, string>>, keys: readonly string[]): string | undefined =>
  keys.map((k) => labels[k]).find((v) => v !== undefined);

/**
 * Istio names a workload after the pod's controller (a Deployment, found through the
 * ReplicaSet owner reference) unless the pod sets `service.istio.io/workload-name`. Our
 * configuration carries no owner references, so, as Istio does for a pod without an owner,
 * the workload is the pod name.
 */
export function workloadOf(pod: MeshPod): Workload {
  const name = pod.labels['service.istio.io/workload-name'] ?? pod.name;
  return {
    name,
    namespace: pod.namespace,
    pod: pod.name,
    canonicalService: firstLabel(pod.labels, NAME_LABELS) ?? name,
    canonicalRevision: firstLabel(pod.labels, REVISION_LABELS) ?? 'latest',
  };
}

export const serviceFqdn = (s: ServiceName): string => `${s.name}.${s.namespace}.svc.${CLUSTER_DOMAIN}`;

const podPeer = (pod: MeshPod, trustDomain: string): Peer => ({
  workload: workloadOf(pod),
  namespace: pod.namespace,
  principal: formatSpiffeId({ trustDomain, namespace: pod.namespace, serviceAccount: pod.serviceAccount }),
});

/** Both ends of a connection as this node knows them now. */
export function flowPeers(flow: ProxyFlow, view: MeshIndex, trustDomain: string): FlowPeers {
  const pod = (key: string | undefined) => (key ? view.state.pods.get(key) : undefined);
  const dstPod = pod(flow.endpoint?.pod ?? flow.dstPod);
  const destination = dstPod ? podPeer(dstPod, trustDomain) : {};
  if (flow.direction === 'outbound') {
    const src = pod(flow.sourcePod);
    const service = flow.service ? view.state.services.get(flow.service) : undefined;
    return { source: src ? podPeer(src, trustDomain) : {}, destination, ...(service ? { service } : {}) };
  }
  const service = serviceOfEndpoint(view, flow.dstIP, flow.dstPort)?.service;
  const source = flow.security === 'none' ? addressedSource(flow.sourceIP, view) : verifiedSource(flow.sourceIdentity, flow.sourceIP, view, trustDomain);
  return { source, destination, ...(service ? { service } : {}) };
}

/**
 * Both ends of a request, from either reporter: the source proxy knows the client pod; the
 * destination proxy knows only the verified identity and address, named as for a tunnel.
 */
export function requestPeers(record: RequestRecord, view: MeshIndex, trustDomain: string): FlowPeers {
  const { source, destination } = record;
  const pod = destination.endpoint?.kind === 'pod' ? destination.endpoint.pod : undefined;
  return {
    source: source.pod
      ? podPeer(source.pod, trustDomain)
      : record.security === 'none' && record.reporter === 'destination'
        ? addressedSource(source.ip, view)
        : verifiedSource(source.identity, source.ip, view, trustDomain),
    destination: pod ? podPeer(pod, trustDomain) : {},
    ...(destination.service ? { service: destination.service } : {}),
  };
}

/**
 * The source of an HBONE tunnel: its verified identity always; its workload only when the pod
 * at the forwarded source address has that very identity, so a peer cannot borrow another
 * pod's name by claiming its address (ztunnel checks the same).
 */
function verifiedSource(identity: string | undefined, ip: string, view: MeshIndex, trustDomain: string): Peer {
  if (!identity) return {};
  const peer: Peer = { principal: identity, namespace: parseSpiffeId(identity).namespace };
  const pod = view.podsByIP.get(ip);
  const candidate = pod && podPeer(pod, trustDomain);
  return candidate?.principal === identity ? candidate : peer;
}

/**
 * The source of plaintext (PERMISSIVE, through :15006): the workload at the connection's
 * source address, as ztunnel names it, but never a principal: nothing proved an identity.
 */
function addressedSource(ip: string, view: MeshIndex): Peer {
  const pod = view.podsByIP.get(ip);
  return pod ? { workload: workloadOf(pod), namespace: pod.namespace } : {};
}

// The tunnel names the pod, not the Service the client dialled: like ztunnel, take the first
// Service (by namespace/name) whose endpoints include that pod port.
const inboundServices = new WeakMap<MeshIndex, Map<string, ServiceDestination>>();

/** The Service port an inbound connection to pod `ip:port` is reported under. */
export function serviceOfEndpoint(view: MeshIndex, ip: string, port: number): ServiceDestination | undefined {
  let byEndpoint = inboundServices.get(view);
  if (!byEndpoint) {
    byEndpoint = new Map();
    const services = [...view.destinations.values()].flatMap((d) => (d.kind === 'service' ? [d] : []));
    services.sort((a, b) => `${a.service.namespace}/${a.service.name}`.localeCompare(`${b.service.namespace}/${b.service.name}`));
    for (const d of services) for (const ep of d.endpoints) if (ep.kind === 'pod' && !byEndpoint.has(`${ep.ip}:${ep.port}`)) byEndpoint.set(`${ep.ip}:${ep.port}`, d);
    inboundServices.set(view, byEndpoint);
  }
  return byEndpoint.get(`${ip}:${port}`);
}
