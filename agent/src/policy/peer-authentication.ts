// Which mTLS mode a workload port requires (DESIGN.md data path step 3: STRICT refuses
// plaintext). Istio's precedence (ComposePeerAuthentication): the workload policy — its port
// entry, then its own mode — over the namespace policy, over the mesh-wide policy in the root
// namespace, over the default PERMISSIVE; UNSET at any level inherits from the level above.
import type { MeshPod, MeshState, MtlsMode } from '../state/model.js';
import { ROOT_NAMESPACE, byKey, selects } from './scope.js';

export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;

/**
 * `port` is the workload (container) port. Where several policies compete at one level,
 * Istio takes the oldest; we have no creation time and take the first by name. As in Istio,
 * a policy with a selector in the root namespace is ignored (workload policies live in the
 * workload's namespace).
 */
export function mtlsMode(state: MeshState, pod: MeshPod, port: number): EffectiveMtlsMode {
  const policies = byKey(state.peerAuthentications.values());
  const mesh = policies.find((p) => p.namespace === ROOT_NAMESPACE && !p.selector);
  const namespace = policies.find((p) => p.namespace === pod.namespace && p.namespace !== ROOT_NAMESPACE && !p.selector);
  const workload = policies.find((p) => p.namespace === pod.namespace && p.namespace !== ROOT_NAMESPACE && p.selector && selects(p.selector, pod));
  const portMode = workload?.portLevelMtls.find((e) => e.port === port)?.mode;
  const levels = [portMode, workload?.mode, namespace?.mode, mesh?.mode];
  return levels.find((m): m is EffectiveMtlsMode => m !== undefined && m !== 'UNSET') ?? 'PERMISSIVE';
}
