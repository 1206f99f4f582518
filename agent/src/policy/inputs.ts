// What authorization decisions depend on: a configuration change that leaves it equal cannot
// change whom a connection admitted earlier was admitted for.
import { isDeepStrictEqual } from 'node:util';
import type { MeshState } from '../state/model.js';

/**
 * True when policies, namespaces, or the labels, service account or IP of a pod present before
 * and after changed. Pods that come or go do not count: a new pod has no connections yet, and
 * a removed pod's connections end with it.
 */
export function authorizationChanged(before: MeshState, after: MeshState): boolean {
  if (!isDeepStrictEqual(before.authorizationPolicies, after.authorizationPolicies)) return true;
  if (!isDeepStrictEqual(before.peerAuthentications, after.peerAuthentications)) return true;
  if (!isDeepStrictEqual(before.namespaces, after.namespaces)) return true;
  for (const [key, pod] of after.pods) {
    const old = before.pods.get(key);
    if (!old) continue;
    if (old.serviceAccount !== pod.serviceAccount || old.podIP !== pod.podIP || !isDeepStrictEqual(old.labels, pod.labels)) return true;
  }
  return false;
}
