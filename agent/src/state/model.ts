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
  /** Rejections of the last update (empty when everything was accepted). */
  rejections: readonly Rejection[];
}

export const objectKey = (namespace: string, name: string): string => `${namespace}/${name}`;
