// Which identities a node may hold: the CA's authorization rule, so that a compromised node can
// only obtain the identities of the pods it actually runs.
import type { MeshState } from '../state/model.js';
import { isNodeIdentity, principalOf, type SpiffeId } from './spiffe.js';

/**
 * true, or the reason to refuse. A node gets a workload identity only while it runs a pod with
 * that service account, and 'node' (the node identity, the CA checks it names this node) only
 * if the node is known.
 */
export function nodeMayHold(state: MeshState, node: string, id: SpiffeId | 'node'): true | string {
  if (id === 'node') return state.nodes.has(node) ? true : `node ${node} is not in the mesh state`;
  if (isNodeIdentity(id)) return `${principalOf(id)} is the node identity; it is granted only with the node's own DNS name`;
  const elsewhere = new Set<string>();
  for (const pod of state.pods.values()) {
    if (pod.namespace !== id.namespace || pod.serviceAccount !== id.serviceAccount) continue;
    if (pod.nodeName === node) return true;
    elsewhere.add(pod.nodeName);
  }
  const where = elsewhere.size ? ` (pods with it run on ${[...elsewhere].sort().join(', ')})` : '';
  return `no pod on node ${node} runs as service account ${id.namespace}/${id.serviceAccount}${where}`;
}
