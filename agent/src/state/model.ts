// The mesh as the agent knows it: the Kubernetes objects it was given, reduced to what the
// data path needs. Built by control/ (file source now, Kubernetes later), read by the rest.

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
  /** null when the Service has no selector (endpoints managed elsewhere). */
  selector: Readonly<Record<string, string>> | null;
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
  authorizationPolicies: ReadonlyMap<string, MeshAuthorizationPolicy>;
  /** key "namespace/name" */
  peerAuthentications: ReadonlyMap<string, MeshPeerAuthentication>;
  /** Rejections of the last update (empty when everything was accepted). */
  rejections: readonly Rejection[];
}

export const objectKey = (namespace: string, name: string): string => `${namespace}/${name}`;
