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

/** "Pod shop/web-1", "Node n1": how validation names the resource in its rejections. */
export const resourceLabel = (r: ViewResource): string => `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;

/** A content hash of a view, for `viewOf(node).hash`: equal views (same order) hash the same. */
export function hashView(resources: readonly ViewResource[]): string {
  const hash = createHash('sha256');
  for (const r of resources) hash.update(JSON.stringify([r.apiVersion, r.kind, r.namespace, r.name, r.json]));
  return hash.digest('hex');
}
