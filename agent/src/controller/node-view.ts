// The controller's views for the nodes: the watched objects reduced to what an agent reads, in
// a fixed order, with a digest so the config stream sends a node only what changed. Every node
// gets every node, namespace, service, running pod and policy (as with Istio's ztunnel, any
// workload may be a destination). No validation here: agents validate and NACK.
import { createHash } from 'node:crypto';
import { WATCHED_KINDS, type KubeObject } from './kube-kinds.js';
import type { NodeView } from './stream-server.js';
import type { ViewResource } from '../control/view-resource.js';

type Json = Record<string, unknown>;

interface Reduced {
  resource: ViewResource;
  rank: number;
  digest: Buffer;
}

const RANK = new Map(WATCHED_KINDS.map((k, i) => [`${k.apiVersion} ${k.kind}`, i]));
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
const SERVICE_NAME = 'kubernetes.io/service-name';
const MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
const ENDPOINTSLICE_CONTROLLER = 'endpointslice-controller.k8s.io';

/**
 * Reductions cached per source object and variant (a pod seen by its own node, or by the
 * others). Objects are never modified in place (the watch replaces an object that changes),
 * so the cache stays right.
 */
const cache = new WeakMap<KubeObject, { local?: Reduced | null; remote?: Reduced | null }>();

function reduced(o: KubeObject, local: boolean): Reduced | null {
  const entry = cache.get(o) ?? {};
  cache.set(o, entry);
  const variant = local ? 'local' : 'remote';
  if (entry[variant] === undefined) entry[variant] = reduce(o, local);
  return entry[variant];
}

/**
 * Every node's view of one set of objects. The objects are reduced and sorted once; a node's
 * view is that shared list with its own pods in their local variant (same place: both
 * variants sort alike and exist alike), and its hash is the shared list's hash and its local
 * pods' digests. A node's view thus costs its own pods, and the list only when it is sent.
 */
export function nodeViews(objects: readonly KubeObject[]): (node: string) => NodeView {
  const shared: Array<{ object: KubeObject; r: Reduced }> = [];
  for (const object of objects) {
    const r = reduced(object, false);
    if (r) shared.push({ object, r });
  }
  shared.sort((a, b) => a.r.rank - b.r.rank || cmp(a.r.resource.namespace, b.r.resource.namespace) || cmp(a.r.resource.name, b.r.resource.name));
  const sharedHash = createHash('sha256');
  const podsByNode = new Map<string, number[]>();
  shared.forEach(({ object, r }, i) => {
    sharedHash.update(r.digest);
    const node = object.kind === 'Pod' ? (object.spec as Json | undefined)?.nodeName : undefined;
    if (typeof node !== 'string') return;
    const list = podsByNode.get(node);
    if (list) list.push(i);
    else podsByNode.set(node, [i]);
  });
  const sharedDigest = sharedHash.digest();
  return (node) => {
    const mine = (podsByNode.get(node) ?? []).map((i) => ({ i, r: reduced(shared[i]!.object, true)! }));
    const hash = createHash('sha256').update(sharedDigest);
    for (const { r } of mine) hash.update(r.digest);
    return {
      hash: hash.digest('hex'),
      get resources(): ViewResource[] {
        const list = shared.map((e) => e.r.resource);
        for (const { i, r } of mine) list[i] = r.resource;
        return list;
      },
    };
  };
}

/** null when the object is not for agents: a kind outside the watched set (never a Secret), a pod that has ended, has no IP yet or uses the host network, a slice of a Service with a selector. */
function reduce(o: KubeObject, local: boolean): Reduced | null {
  const rank = RANK.get(`${o.apiVersion} ${o.kind}`);
  if (rank === undefined) return null;
  const body = o.kind === 'Pod' ? reducePod(o, local) : o.kind === 'Node' ? reduceNode(o) : o.kind === 'EndpointSlice' ? reduceSlice(o) : reduceOther(o);
  if (!body) return null;
  const resource: ViewResource = {
    apiVersion: o.apiVersion,
    kind: o.kind,
    namespace: o.metadata.namespace ?? '',
    name: o.metadata.name,
    json: canonicalJson(body),
  };
  const digest = createHash('sha256').update(`${resource.apiVersion}\0${resource.kind}\0${resource.namespace}\0${resource.name}\0${resource.json}`).digest();
  return { resource, rank, digest };
}

/**
 * A pod's annotations and QoS class (which locates its cgroup) matter only to the agent of
 * its own node; leaving them out elsewhere keeps annotation churn from resyncing every node.
 * Conditions keep type and status: their timestamps change nothing an agent does.
 */
function reducePod(o: KubeObject, local: boolean): Json | undefined {
  const spec = (o.spec ?? {}) as Json;
  const status = (o.status ?? {}) as Json;
  if (status.phase === 'Succeeded' || status.phase === 'Failed' || !status.podIP) return undefined;
  // A host-network pod has the node's address: it is no workload of its own to capture or
  // reach (ztunnel skips them too), and would make the node's IP look like that pod's.
  if (spec.hostNetwork === true) return undefined;
  const metaFields = local ? ['name', 'namespace', 'uid', 'labels', 'annotations', 'creationTimestamp'] : ['name', 'namespace', 'uid', 'labels', 'creationTimestamp'];
  const containers = Array.isArray(spec.containers) ? spec.containers.map((c) => pick(c as Json, ['name', 'ports'])) : undefined;
  const conditions = Array.isArray(status.conditions) ? status.conditions.map((c) => pick(c as Json, ['type', 'status'])) : undefined;
  return {
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: cleanMetadata(pick(o.metadata, metaFields)),
    spec: pick({ ...spec, containers }, ['nodeName', 'serviceAccountName', 'containers']),
    status: pick({ ...status, conditions }, local ? ['podIP', 'conditions', 'qosClass'] : ['podIP', 'conditions']),
  };
}

function reduceNode(o: KubeObject): Json {
  return {
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: pick(o.metadata, ['name', 'labels']),
    status: pick((o.status ?? {}) as Json, ['addresses']),
  };
}

/**
 * A slice keeps its address type, ports, and of each endpoint the addresses and readiness.
 * Slices the EndpointSlice controller makes for Services with a selector are
 * left out: agents take those endpoints from the pods, and such slices change with every pod
 * readiness change, which would resync every node for nothing. The mirroring controller's
 * slices (of selector-less Services with hand-made Endpoints) stay.
 */
function reduceSlice(o: KubeObject): Json | undefined {
  const labels = (o.metadata.labels ?? {}) as Record<string, string>;
  if (labels[MANAGED_BY] === ENDPOINTSLICE_CONTROLLER) return undefined;
  const endpoints = Array.isArray(o.endpoints)
    ? o.endpoints.map((e: unknown) => {
        if (!isJson(e)) return e;
        const conditions = isJson(e.conditions) ? pick(e.conditions, ['ready']) : e.conditions;
        return pick({ ...e, conditions }, ['addresses', 'conditions']);
      })
    : o.endpoints;
  return pick(
    {
      apiVersion: o.apiVersion,
      kind: o.kind,
      metadata: { ...pick(o.metadata, ['name', 'namespace']), ...(SERVICE_NAME in labels ? { labels: { [SERVICE_NAME]: labels[SERVICE_NAME] } } : {}) },
      addressType: o.addressType,
      endpoints,
      ports: o.ports,
    },
    ['apiVersion', 'kind', 'metadata', 'addressType', 'endpoints', 'ports'],
  );
}

const isJson = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Agents read no status of these kinds, and route status is rewritten by gateway controllers often. */
function reduceOther(o: KubeObject): Json {
  const copy: Json = { ...o, metadata: cleanMetadata(o.metadata) };
  delete copy.status;
  return copy;
}

function cleanMetadata(metadata: Json): Json {
  const copy: Json = { ...metadata };
  for (const field of ['managedFields', 'resourceVersion', 'generation', 'ownerReferences']) delete copy[field];
  if (copy.annotations && typeof copy.annotations === 'object') {
    const annotations: Json = { ...(copy.annotations as Json) };
    delete annotations[LAST_APPLIED];
    if (Object.keys(annotations).length) copy.annotations = annotations;
    else delete copy.annotations;
  }
  return copy;
}

function pick(o: Json, fields: readonly string[]): Json {
  const out: Json = {};
  for (const f of fields) if (o[f] !== undefined && o[f] !== null) out[f] = o[f];
  return out;
}

/** JSON with object keys sorted at every level, so that the same content always gives the same text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Json).sort(([a], [b]) => cmp(a, b))) : v,
  );
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
