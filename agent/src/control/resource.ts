// The plug-in point of configuration validation: one KindValidator per accepted
// apiVersion/kind turns a Kubernetes-shaped object into its entry in the mesh state, or
// reports why it cannot. Identity and metadata are read here, the same way for every kind.
import {
  objectKey,
  type MeshAuthorizationPolicy,
  type MeshDestinationRule,
  type MeshEndpointSlice,
  type MeshFaultInjection,
  type MeshLocalRateLimit,
  type MeshRoute,
  type MeshNamespace,
  type MeshNode,
  type MeshPeerAuthentication,
  type MeshPod,
  type MeshService,
} from '../state/model.js';
import { FieldErrors, nameProblem, readObject, readString, readStringMap, show, type NameFormat, type Obj } from './fields.js';

/** The MeshState collection each kind fills, and the type of its entries. */
export interface Collections {
  nodes: MeshNode;
  namespaces: MeshNamespace;
  pods: MeshPod;
  services: MeshService;
  endpointSlices: MeshEndpointSlice;
  authorizationPolicies: MeshAuthorizationPolicy;
  peerAuthentications: MeshPeerAuthentication;
  httpRoutes: MeshRoute;
  grpcRoutes: MeshRoute;
  destinationRules: MeshDestinationRule;
  faultInjections: MeshFaultInjection;
  localRateLimits: MeshLocalRateLimit;
}
export type CollectionName = keyof Collections;

export interface ValidationContext {
  /** This agent's node: checks that only make sense locally (cgroup directories) apply to its pods. */
  node: string;
  cgroupExists(path: string): boolean;
  /**
   * Kubernetes mode: the cgroup directory of a pod of this node found from its UID (and QoS
   * class) under the kubelet's layouts; undefined while the pod has none yet.
   */
  podCgroup?: (pod: { uid: string; qosClass?: string }) => string | undefined;
}

export interface ObjectMeta {
  name: string;
  /** "" for cluster-scoped kinds. */
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  uid?: string;
  /** metadata.creationTimestamp in ms since the epoch; the older resource wins precedence ties. */
  createdMs?: number;
}

export interface KindValidator<C extends CollectionName = CollectionName> {
  readonly apiVersion: string;
  readonly kind: string;
  readonly collection: C;
  /** Namespaced kinds default metadata.namespace to "default", as kubectl does. */
  readonly namespaced: boolean;
  /** Kubernetes' rule for metadata.name of this kind. */
  readonly nameFormat: NameFormat;
  /** The state entry; it is accepted only if nothing was added to `errors`. */
  validate(object: Obj, meta: ObjectMeta, errors: FieldErrors, ctx: ValidationContext): Collections[C] | undefined;
}

/** Any registered validator, keeping the link between its collection and its entry type. */
export type AnyKindValidator = { [C in CollectionName]: KindValidator<C> }[CollectionName];

/** What identifies a resource across updates: its kind, namespace and name. */
export interface Identity {
  /** e.g. "Service default/web"; also the `resource` of its rejections. */
  label: string;
  /** Key in the MeshState collection ("namespace/name", or the name when cluster-scoped). */
  key: string;
}

/**
 * Reads metadata; `identity` is undefined when the object cannot be named (no usable
 * metadata.name), in which case it can neither be a duplicate nor keep a last good version.
 */
export function readMetadata(
  object: Obj,
  kind: AnyKindValidator,
  errors: FieldErrors,
): { meta: ObjectMeta; identity: Identity | undefined } {
  const metadata = readObject(object.metadata, 'metadata', errors) ?? {};
  if (metadata.name === undefined || metadata.name === null || metadata.name === '') errors.add('metadata.name', 'is required');
  const name = readString(metadata.name, 'metadata.name', errors);
  const namespace = kind.namespaced ? (readString(metadata.namespace, 'metadata.namespace', errors) ?? 'default') : '';
  if (name) {
    const problem = nameProblem(name, kind.nameFormat);
    if (problem) errors.add('metadata.name', problem);
  }
  if (kind.namespaced) {
    const problem = nameProblem(namespace, 'dns1123-label');
    if (problem) errors.add('metadata.namespace', problem);
  }
  const meta: ObjectMeta = {
    name: name ?? '',
    namespace,
    labels: readStringMap(metadata.labels, 'metadata.labels', errors, 'label'),
    annotations: readStringMap(metadata.annotations, 'metadata.annotations', errors, 'any'),
  };
  const uid = readString(metadata.uid, 'metadata.uid', errors);
  if (uid) meta.uid = uid;
  const created = readTimestamp(metadata.creationTimestamp, 'metadata.creationTimestamp', errors);
  if (created !== undefined) meta.createdMs = created;
  if (!name) return { meta, identity: undefined };
  const key = kind.namespaced ? objectKey(namespace, name) : name;
  return { meta, identity: { label: `${kind.kind} ${key}`, key } };
}

// RFC 3339 as Kubernetes writes metav1.Time ("2024-05-01T10:00:00Z"), with optional fraction and offset.
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function readTimestamp(value: unknown, field: string, errors: FieldErrors): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = typeof value === 'string' && RFC3339.test(value) ? Date.parse(value) : NaN;
  if (!Number.isNaN(ms)) return ms;
  errors.add(field, `must be an RFC 3339 time such as "2024-05-01T10:00:00Z", got ${show(value)}`);
  return undefined;
}
