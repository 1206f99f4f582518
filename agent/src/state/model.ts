// The mesh as the agent knows it: the Kubernetes objects it was given, reduced to what the
// data path needs. Built by control/ (from a file, or from the controller's stream in Kubernetes), read by the rest.

export const ENROLL_LABEL = 'nodemesh.io/mode';
export const ENROLL_VALUE = 'enabled';
export const CGROUP_ANNOTATION = 'nodemesh.io/cgroup';

export interface MeshNode {
  name: string;
  /** status.addresses InternalIP: where this node's proxy listens. */
  internalIP: string;
}

export interface MeshNamespace {
  name: string;
  labels: Readonly<Record<string, string>>;
  /** label nodemesh.io/mode=enabled */
  enrolled: boolean;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

export interface MeshPod {
  namespace: string;
  name: string;
  uid?: string;
  nodeName: string;
  serviceAccount: string;
  /** status.podIP; a pod without one is not an endpoint and cannot be enrolled. */
  podIP?: string;
  labels: Readonly<Record<string, string>>;
  /** status.conditions Ready (true when the condition is absent, as for a static pod list). */
  ready: boolean;
  containerPorts: readonly ContainerPort[];
  /** Absolute cgroup v2 directory of the pod (standalone: annotation nodemesh.io/cgroup). */
  cgroupPath?: string;
}

export interface MeshServicePort {
  name?: string;
  port: number;
  /** A number, or the name of a container port. */
  targetPort: number | string;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface MeshService {
  namespace: string;
  name: string;
  /** null for headless services (clusterIP: None). */
  clusterIP: string | null;
  ports: readonly MeshServicePort[];
  /** null when the Service has no selector: its endpoints come from its EndpointSlices. */
  selector: Readonly<Record<string, string>> | null;
}

/** An endpoint of an EndpointSlice: its first address, as every Kubernetes consumer reads it. */
export interface SliceEndpoint {
  address: string;
  /** conditions.ready; absent counts as ready, as Kubernetes says. */
  ready: boolean;
}

export interface SlicePort {
  /** Matched to the Service port of the same name ("" for the unnamed port). */
  name: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

/** discovery.k8s.io/v1 EndpointSlice: the endpoints of a Service without a selector. */
export interface MeshEndpointSlice {
  namespace: string;
  name: string;
  /** label kubernetes.io/service-name */
  serviceName: string;
  /** IPv6 and FQDN slices are kept with no endpoints: the mesh is IPv4. */
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: readonly SliceEndpoint[];
  /** Entries without a port are left out, as kube-proxy leaves them out. */
  ports: readonly SlicePort[];
}

/** AuthorizationPolicy action; CUSTOM (external authorizer) is refused by validation. */
export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT';

/**
 * Value lists keep Istio's written form: "abc" exact, "abc*" prefix, "*abc" suffix, "*"
 * presence. An absent field places no condition; validation refuses empty lists.
 */
export interface AuthorizationSource {
  /** Peer identities "<trust-domain>/ns/<namespace>/sa/<service-account>". */
  principals?: readonly string[];
  notPrincipals?: readonly string[];
  namespaces?: readonly string[];
  notNamespaces?: readonly string[];
  /** IP addresses or CIDR ranges of the peer (the connection's source address). */
  ipBlocks?: readonly string[];
  notIpBlocks?: readonly string[];
  /** IP addresses or CIDR ranges of the original client (X-Forwarded-For), else the peer. */
  remoteIpBlocks?: readonly string[];
  notRemoteIpBlocks?: readonly string[];
}

export interface AuthorizationOperation {
  /** HTTP-only: the Host / :authority header, compared case-insensitively. */
  hosts?: readonly string[];
  notHosts?: readonly string[];
  /** Destination (pod) ports. */
  ports?: readonly number[];
  notPorts?: readonly number[];
  /** HTTP-only. */
  methods?: readonly string[];
  notMethods?: readonly string[];
  /** HTTP-only: the request path without its query string. */
  paths?: readonly string[];
  notPaths?: readonly string[];
}

export interface AuthorizationCondition {
  /** source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port, request.headers[<name>] */
  key: string;
  values?: readonly string[];
  notValues?: readonly string[];
}

/** Matches when every present part matches: any `from`, any `to`, all `when`. `{}` matches everything. */
export interface AuthorizationRule {
  from?: readonly AuthorizationSource[];
  to?: readonly AuthorizationOperation[];
  when?: readonly AuthorizationCondition[];
}

/** security.istio.io AuthorizationPolicy. */
export interface MeshAuthorizationPolicy {
  namespace: string;
  name: string;
  /** spec.selector.matchLabels; null applies to the whole namespace (the whole mesh in the root namespace). */
  selector: Readonly<Record<string, string>> | null;
  action: AuthorizationAction;
  /** No rules matches nothing: an ALLOW policy without rules allows nothing. */
  rules: readonly AuthorizationRule[];
}

/** UNSET inherits the mode of the level above (port → workload → namespace → mesh). */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE' | 'UNSET';

/** security.istio.io PeerAuthentication. */
export interface MeshPeerAuthentication {
  namespace: string;
  name: string;
  /** spec.selector.matchLabels; null is namespace-wide (mesh-wide in the root namespace). */
  selector: Readonly<Record<string, string>> | null;
  mode: MtlsMode;
  /** spec.portLevelMtls by workload (container) port, in port order; only with a selector. */
  portLevelMtls: ReadonlyArray<{ port: number; mode: MtlsMode }>;
}

// ---- L7 traffic: Gateway API routes (GAMMA), Istio DestinationRule, nodemesh.io policies ----

/** Gateway API path match; validation fills the default PathPrefix "/" of an HTTPRoute match. */
export interface PathMatch {
  type: 'Exact' | 'PathPrefix' | 'RegularExpression';
  value: string;
}

/** Header or query parameter match. Header names are lower-cased; query names keep their case. */
export interface ValueMatch {
  type: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface RouteMatch {
  /** HTTPRoute only (a GRPCRoute method match is `grpc`). */
  path?: PathMatch;
  /** HTTP method, upper case. */
  method?: string;
  headers: readonly ValueMatch[];
  queryParams: readonly ValueMatch[];
  /** GRPCRoute method match: at least one of service, method. */
  grpc?: { type: 'Exact' | 'RegularExpression'; service?: string; method?: string };
}

export interface HeaderModifier {
  /** Names lower-cased. */
  set: ReadonlyArray<{ name: string; value: string }>;
  add: ReadonlyArray<{ name: string; value: string }>;
  remove: readonly string[];
}

export type PathModifier = { type: 'ReplaceFullPath'; value: string } | { type: 'ReplacePrefixMatch'; value: string };

/** A Service a route sends to (kind Service, core group). */
export interface BackendRef {
  namespace: string;
  name: string;
  /** Required by Gateway API for Service backends; validation enforces it. */
  port: number;
  /** Relative weight; 0 never receives traffic. Default 1. */
  weight: number;
  /** Filters that apply only when this backend is chosen. */
  filters: readonly RouteFilter[];
}

export type RouteFilter =
  | { type: 'RequestHeaderModifier'; modifier: HeaderModifier }
  | { type: 'ResponseHeaderModifier'; modifier: HeaderModifier }
  | {
      type: 'RequestRedirect';
      scheme?: 'http' | 'https';
      hostname?: string;
      path?: PathModifier;
      port?: number;
      /** 301, 302 (Gateway API's default), 303, 307, 308 */
      statusCode: number;
    }
  | { type: 'URLRewrite'; hostname?: string; path?: PathModifier }
  /** Fire and forget: the copy's response is discarded. percent defaults to 100. */
  | { type: 'RequestMirror'; backend: Omit<BackendRef, 'weight' | 'filters'>; percent: number };

export interface RouteRule {
  name?: string;
  /** Never empty: validation supplies the kind's default match. */
  matches: readonly RouteMatch[];
  filters: readonly RouteFilter[];
  /** Empty: the request is answered 500 (no backend). */
  backendRefs: readonly BackendRef[];
  /** Gateway API timeouts; absent or 0 means no timeout. */
  timeouts?: { requestMs?: number; backendRequestMs?: number };
  /** Gateway API HTTPRoute retry (GEP-1731). */
  retry?: { codes: readonly number[]; attempts?: number; backoffMs?: number };
}

/** A parent of kind Service (GAMMA); port absent attaches to every port of the Service. */
export interface RouteParentRef {
  namespace: string;
  name: string;
  port?: number;
}

/** gateway.networking.k8s.io HTTPRoute or GRPCRoute. */
export interface MeshRoute {
  kind: 'HTTPRoute' | 'GRPCRoute';
  namespace: string;
  name: string;
  /** metadata.creationTimestamp in ms; the older route wins a precedence tie. */
  createdMs?: number;
  parentRefs: readonly RouteParentRef[];
  rules: readonly RouteRule[];
}

export type LoadBalancerSettings =
  | { simple: 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' }
  | { consistentHash: { httpHeaderName: string } | { useSourceIp: true } };

export interface ConnectionPoolSettings {
  /** Max connections to the whole destination (tcp.maxConnections). */
  maxConnections?: number;
  connectTimeoutMs?: number;
  /** Requests waiting for a connection (http.http1MaxPendingRequests). */
  http1MaxPendingRequests?: number;
  /** Requests in flight to the destination (http.http2MaxRequests). */
  http2MaxRequests?: number;
  /** 1 disables keep-alive; absent is unlimited. */
  maxRequestsPerConnection?: number;
  /** Retries in flight to the destination (http.maxRetries). */
  maxRetries?: number;
  idleTimeoutMs?: number;
}

export interface OutlierDetectionSettings {
  /** Default 5 when outlierDetection is set; 0 disables. */
  consecutive5xxErrors: number;
  /** 502, 503, 504 and connection failures; 0 (default) disables. */
  consecutiveGatewayErrors: number;
  /** Default 10 s. */
  intervalMs: number;
  /** Default 30 s; an endpoint's n-th ejection lasts n times this. */
  baseEjectionTimeMs: number;
  /** Default 10. */
  maxEjectionPercent: number;
}

export interface TrafficPolicy {
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetectionSettings;
}

/** networking.istio.io DestinationRule, resolved to the Service its host names. */
export interface MeshDestinationRule {
  namespace: string;
  name: string;
  /** metadata.creationTimestamp in ms; the oldest rule for a host wins within a namespace. */
  createdMs?: number;
  /** spec.host as written. */
  host: string;
  /** The Service the host resolves to ("<name>", "<name>.<ns>", "<name>.<ns>.svc.cluster.local"). */
  service: { namespace: string; name: string };
  trafficPolicy: TrafficPolicy;
  /** spec.trafficPolicy.portLevelSettings: replaces the top-level settings on that Service port. */
  portLevel: ReadonlyArray<{ port: number; policy: TrafficPolicy }>;
}

/** What a nodemesh.io policy attaches to, in its own namespace (Gateway API policy attachment). */
export interface PolicyTargetRef {
  kind: 'Service' | 'HTTPRoute' | 'GRPCRoute';
  name: string;
}

/** nodemesh.io/v1alpha1 FaultInjection. */
export interface MeshFaultInjection {
  namespace: string;
  name: string;
  targetRefs: readonly PolicyTargetRef[];
  /** percentage is 0..100. */
  delay?: { fixedDelayMs: number; percentage: number };
  /** Exactly one of httpStatus, grpcStatus (numeric gRPC code). */
  abort?: { httpStatus?: number; grpcStatus?: number; percentage: number };
}

/** nodemesh.io/v1alpha1 LocalRateLimit: Envoy's token bucket, per node proxy. */
export interface MeshLocalRateLimit {
  namespace: string;
  name: string;
  targetRefs: readonly PolicyTargetRef[];
  tokenBucket: { maxTokens: number; tokensPerFill: number; fillIntervalMs: number };
}

/** A resource refused by validation; its last good version (if any) stays in force. */
export interface Rejection {
  /** e.g. "Service default/web" */
  resource: string;
  /** e.g. "spec.ports[0].port" */
  field: string;
  reason: string;
}

/** Immutable snapshot; a new one is built for every accepted change. */
export interface MeshState {
  /** Increases by one with every accepted change. */
  version: number;
  nodes: ReadonlyMap<string, MeshNode>;
  namespaces: ReadonlyMap<string, MeshNamespace>;
  /** key "namespace/name" */
  pods: ReadonlyMap<string, MeshPod>;
  /** key "namespace/name" */
  services: ReadonlyMap<string, MeshService>;
  /** key "namespace/name" */
  endpointSlices: ReadonlyMap<string, MeshEndpointSlice>;
  /** key "namespace/name" */
  authorizationPolicies: ReadonlyMap<string, MeshAuthorizationPolicy>;
  /** key "namespace/name" */
  peerAuthentications: ReadonlyMap<string, MeshPeerAuthentication>;
  /** key "namespace/name" */
  httpRoutes: ReadonlyMap<string, MeshRoute>;
  /** key "namespace/name" */
  grpcRoutes: ReadonlyMap<string, MeshRoute>;
  /** key "namespace/name" */
  destinationRules: ReadonlyMap<string, MeshDestinationRule>;
  /** key "namespace/name" */
  faultInjections: ReadonlyMap<string, MeshFaultInjection>;
  /** key "namespace/name" */
  localRateLimits: ReadonlyMap<string, MeshLocalRateLimit>;
  /** Rejections of the last update (empty when everything was accepted). */
  rejections: readonly Rejection[];
}

export const objectKey = (namespace: string, name: string): string => `${namespace}/${name}`;
