// Which policies reach a workload: Istio's scopes. A policy in the root namespace without a
// selector covers the mesh, one elsewhere without a selector its namespace, and one with a
// selector the pods whose labels it matches.
import type { MeshPod } from '../state/model.js';

/** Istio's root namespace (meshConfig.rootNamespace): policies here apply mesh-wide. */
export const ROOT_NAMESPACE = 'nodemesh-system';

/** True when every label of the selector is on the pod; a null selector selects every pod. */
export function selects(selector: Readonly<Record<string, string>> | null, pod: MeshPod): boolean {
  if (!selector) return true;
  return Object.entries(selector).every(([key, value]) => pod.labels[key] === value);
}

/** Entries of a "namespace/name" keyed collection, by key, so "first" is stable across reloads. */
export function byKey<T extends { namespace: string; name: string }>(entries: Iterable<T>): T[] {
  const key = (e: T): string => `${e.namespace}/${e.name}`;
  return [...entries].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
