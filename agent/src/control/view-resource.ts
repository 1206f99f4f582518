// One Kubernetes object of a node's view, as the controller streams it to the agent: the
// contract between the Kubernetes watch (which produces views) and the config stream.
import { createHash } from 'node:crypto';

export interface ViewResource {
  /** e.g. "v1", "security.istio.io/v1" */
  apiVersion: string;
  kind: string;
  /** "" for cluster-scoped kinds. */
  namespace: string;
  name: string;
  /** The object reduced to what agents read, as JSON with sorted keys; the agent validates it as it validates the YAML file. */
  json: string;
}

/** What names a resource across a node's successive views. */
export interface ResourceKey {
  kind: string;
  namespace: string;
  name: string;
}

/** The same resource across views: kind, namespace and name match. */
export const resourceIdentity = (r: ResourceKey): string => `${r.kind}\u0000${r.namespace}\u0000${r.name}`;

/**
 * What turns the view `before` into `after`: the resources added or changed, and the keys of
 * those gone. Views of successive changes share their unchanged resources (the same objects),
 * mostly in the same places: the common head and tail are skipped by reference, and only the
 * span between them is compared by identity, in any order.
 */
export function diffResources(before: readonly ViewResource[], after: readonly ViewResource[]): { changed: ViewResource[]; removed: ResourceKey[] } {
  let head = 0;
  while (head < before.length && head < after.length && before[head] === after[head]) head++;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > head && endAfter > head && before[endBefore - 1] === after[endAfter - 1]) (endBefore--, endAfter--);
  const gone = new Map<string, ViewResource>();
  for (let i = head; i < endBefore; i++) gone.set(resourceIdentity(before[i]!), before[i]!);
  const changed: ViewResource[] = [];
  for (let i = head; i < endAfter; i++) {
    const r = after[i]!;
    const id = resourceIdentity(r);
    const was = gone.get(id);
    gone.delete(id);
    if (was === undefined || was.json !== r.json || was.apiVersion !== r.apiVersion) changed.push(r);
  }
  return { changed, removed: [...gone.values()].map(({ kind, namespace, name }) => ({ kind, namespace, name })) };
}

/** "Pod shop/web-1", "Node n1": how validation names the resource in its rejections. */
export const resourceLabel = (r: ViewResource): string => `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;

/** A content hash of a view, for `viewOf(node).hash`: equal views (same order) hash the same. */
export function hashView(resources: readonly ViewResource[]): string {
  const hash = createHash('sha256');
  for (const r of resources) hash.update(JSON.stringify([r.apiVersion, r.kind, r.namespace, r.name, r.json]));
  return hash.digest('hex');
}
