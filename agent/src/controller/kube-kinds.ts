// The Kubernetes kinds the controller watches and serves to agents, in the order a node's
// view lists them, and the plain-JSON shape objects take between the watch and the view.

export interface WatchedKind {
  apiVersion: string;
  kind: string;
  /** The REST resource name: /api/v1/<plural> or /apis/<group>/<version>/<plural>. */
  plural: string;
  namespaced: boolean;
}

/** Secrets and ConfigMaps are deliberately absent: nothing here may carry them to agents. */
export const WATCHED_KINDS: readonly WatchedKind[] = [
  { apiVersion: 'v1', kind: 'Node', plural: 'nodes', namespaced: false },
  { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  { apiVersion: 'v1', kind: 'Service', plural: 'services', namespaced: true },
  { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true },
  { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', plural: 'endpointslices', namespaced: true },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', plural: 'httproutes', namespaced: true },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', plural: 'grpcroutes', namespaced: true },
  { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', namespaced: true },
  { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', plural: 'peerauthentications', namespaced: true },
  { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', plural: 'destinationrules', namespaced: true },
  { apiVersion: 'nodemesh.io/v1alpha1', kind: 'FaultInjection', plural: 'faultinjections', namespaced: true },
  { apiVersion: 'nodemesh.io/v1alpha1', kind: 'LocalRateLimit', plural: 'localratelimits', namespaced: true },
];

/** The cluster-wide list/watch path of a kind (all namespaces for a namespaced kind). */
export function collectionPath(k: WatchedKind): string {
  return k.apiVersion.includes('/') ? `/apis/${k.apiVersion}/${k.plural}` : `/api/${k.apiVersion}/${k.plural}`;
}

export interface KubeObjectMeta {
  name: string;
  namespace?: string;
  [field: string]: unknown;
}

/** An object as the API server's JSON has it, with apiVersion and kind always set. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: KubeObjectMeta;
  [field: string]: unknown;
}
