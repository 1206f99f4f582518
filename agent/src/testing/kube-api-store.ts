// The storage half of the Kubernetes API server double: the resources it serves, one global
// resourceVersion bumped by every write, a bounded window of past events for watches to
// resume from, and Status errors shaped like the real server's.
import { randomUUID } from 'node:crypto';
import { NodemeshError } from '../errors.js';

export type Json = Record<string, any>;

/** One REST resource. Kept apart from controller/kube-kinds.ts so the double checks the controller's table instead of sharing it. */
export interface ApiResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

const core = (plural: string, kind: string, namespaced: boolean): ApiResource => ({ group: '', version: 'v1', plural, kind, namespaced });
const custom = (groupVersion: string, plural: string, kind: string): ApiResource => {
  const [group, version] = groupVersion.split('/') as [string, string];
  return { group, version, plural, kind, namespaced: true };
};

export const API_RESOURCES: readonly ApiResource[] = [
  core('namespaces', 'Namespace', false),
  core('nodes', 'Node', false),
  core('pods', 'Pod', true),
  core('services', 'Service', true),
  core('secrets', 'Secret', true),
  core('configmaps', 'ConfigMap', true),
  custom('discovery.k8s.io/v1', 'endpointslices', 'EndpointSlice'),
  custom('gateway.networking.k8s.io/v1', 'httproutes', 'HTTPRoute'),
  custom('gateway.networking.k8s.io/v1', 'grpcroutes', 'GRPCRoute'),
  custom('security.istio.io/v1', 'authorizationpolicies', 'AuthorizationPolicy'),
  custom('security.istio.io/v1', 'peerauthentications', 'PeerAuthentication'),
  custom('networking.istio.io/v1', 'destinationrules', 'DestinationRule'),
  custom('nodemesh.io/v1alpha1', 'faultinjections', 'FaultInjection'),
  custom('nodemesh.io/v1alpha1', 'localratelimits', 'LocalRateLimit'),
];

export const apiVersionOf = (r: ApiResource): string => (r.group ? `${r.group}/${r.version}` : r.version);
/** "pods", "httproutes.gateway.networking.k8s.io": how the real server names a resource in messages. */
const qualified = (r: ApiResource): string => (r.group ? `${r.plural}.${r.group}` : r.plural);

export function findResource(apiVersion: string, kind: string): ApiResource | undefined {
  return API_RESOURCES.find((r) => apiVersionOf(r) === apiVersion && r.kind === kind);
}

/** A metav1.Status; `code` is also the HTTP status of the answer. */
export function failureStatus(code: number, reason: string, message: string, details?: Json): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** The API answered with a failure Status: thrown by the in-process calls, sent over HTTP by the server. */
export class StatusError extends NodemeshError {
  readonly status: Json;

  constructor(status: Json) {
    super('NM_ERR_KUBE_API', `${status.code} ${status.reason}: ${status.message}`);
    this.status = status;
  }
}

const objectDetails = (r: ApiResource, name: string): Json => ({ name, ...(r.group ? { group: r.group } : {}), kind: r.plural });

export interface StoreEvent {
  resourceVersion: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: ApiResource;
  /** A snapshot with apiVersion and kind set, as a watch sends it. */
  object: Json;
}

export class ObjectStore {
  #rv = 0;
  /** Events at or below this resourceVersion are forgotten: a watch from before it gets 410. */
  #floor = 0;
  #events: StoreEvent[] = [];
  readonly #window: number;
  readonly #objects = new Map<ApiResource, Map<string, Json>>(API_RESOURCES.map((r) => [r, new Map()]));
  readonly #listeners = new Set<(e: StoreEvent) => void>();

  constructor(eventWindow: number) {
    this.#window = eventWindow;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  /** Copies, in etcd key order (namespace, then name), as a list answer has them. */
  list(r: ApiResource, namespace?: string): Json[] {
    return [...this.#objects.get(r)!.entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => structuredClone(o));
  }

  get(r: ApiResource, namespace: string, name: string): Json {
    const found = this.#objects.get(r)!.get(key(r, namespace, name));
    if (!found) throw new StatusError(failureStatus(404, 'NotFound', `${qualified(r)} "${name}" not found`, objectDetails(r, name)));
    return structuredClone(found);
  }

  /** `namespace` is the request's; a namespaced object without metadata.namespace takes it. */
  create(r: ApiResource, input: Json, namespace: string, opts: { keepUid?: boolean } = {}): Json {
    const obj = this.#prepare(r, input, namespace);
    const k = key(r, namespace, obj.metadata.name);
    if (this.#objects.get(r)!.has(k)) {
      throw new StatusError(failureStatus(409, 'AlreadyExists', `${qualified(r)} "${obj.metadata.name}" already exists`, objectDetails(r, obj.metadata.name)));
    }
    obj.metadata.uid = opts.keepUid && typeof obj.metadata.uid === 'string' ? obj.metadata.uid : randomUUID();
    obj.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    return this.#write(r, k, obj, 'ADDED');
  }

  /** A replace: a stale metadata.resourceVersion is a conflict, none means unconditional. */
  update(r: ApiResource, input: Json, namespace: string): Json {
    const obj = this.#prepare(r, input, namespace);
    const stored = this.get(r, namespace, obj.metadata.name);
    const expected = obj.metadata.resourceVersion;
    if (expected !== undefined && expected !== stored.metadata.resourceVersion) {
      throw new StatusError(
        failureStatus(
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${qualified(r)} "${obj.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`,
          objectDetails(r, obj.metadata.name),
        ),
      );
    }
    obj.metadata.uid = stored.metadata.uid;
    obj.metadata.creationTimestamp = stored.metadata.creationTimestamp;
    return this.#write(r, key(r, namespace, obj.metadata.name), obj, 'MODIFIED');
  }

  /** The deleted object, carrying the resourceVersion of its deletion as the DELETED event does. */
  remove(r: ApiResource, namespace: string, name: string): Json {
    const obj = this.get(r, namespace, name);
    const k = key(r, namespace, name);
    this.#objects.get(r)!.delete(k);
    return this.#write(r, k, obj, 'DELETED');
  }

  /** Events of `r` after `since`, or undefined when some of them were compacted away. */
  eventsSince(r: ApiResource, since: number, namespace?: string): StoreEvent[] | undefined {
    if (since < this.#floor) return undefined;
    return this.#events.filter((e) => e.resourceVersion > since && e.resource === r && (namespace === undefined || e.object.metadata.namespace === namespace));
  }

  /** The oldest resourceVersion a watch may still resume from. */
  get floor(): number {
    return this.#floor;
  }

  compact(): void {
    this.#events = [];
    this.#floor = this.#rv;
  }

  onEvent(listener: (e: StoreEvent) => void): void {
    this.#listeners.add(listener);
  }

  #prepare(r: ApiResource, input: Json, namespace: string): Json {
    const obj = structuredClone(input);
    const apiVersion = apiVersionOf(r);
    if ((obj.apiVersion ?? apiVersion) !== apiVersion || (obj.kind ?? r.kind) !== r.kind) {
      throw new StatusError(failureStatus(400, 'BadRequest', `the API version in the data (${obj.apiVersion}) and kind (${obj.kind}) do not match ${apiVersion} ${r.kind}`));
    }
    obj.apiVersion = apiVersion;
    obj.kind = r.kind;
    obj.metadata ??= {};
    if (typeof obj.metadata.name !== 'string' || obj.metadata.name === '') {
      throw new StatusError(failureStatus(422, 'Invalid', `${r.kind} "" is invalid: metadata.name: Required value: name or generateName is required`));
    }
    if (!r.namespaced) delete obj.metadata.namespace;
    else if ((obj.metadata.namespace ?? namespace) !== namespace) {
      throw new StatusError(failureStatus(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
    } else obj.metadata.namespace = namespace;
    if (r.kind === 'Secret' && obj.stringData) {
      // The server folds stringData into data and never returns it.
      obj.data = { ...obj.data };
      for (const [k, v] of Object.entries(obj.stringData as Record<string, string>)) obj.data[k] = Buffer.from(v).toString('base64');
      delete obj.stringData;
    }
    return obj;
  }

  #write(r: ApiResource, k: string, obj: Json, type: StoreEvent['type']): Json {
    obj.metadata.resourceVersion = String(++this.#rv);
    if (type !== 'DELETED') this.#objects.get(r)!.set(k, obj);
    const event: StoreEvent = { resourceVersion: this.#rv, type, resource: r, object: structuredClone(obj) };
    this.#events.push(event);
    if (this.#events.length > this.#window) this.#floor = this.#events.shift()!.resourceVersion;
    for (const listener of this.#listeners) listener(event);
    return structuredClone(obj);
  }
}

const key = (r: ApiResource, namespace: string, name: string): string => (r.namespaced ? `${namespace}/${name}` : name);
