// The inbound authorization decision (DESIGN.md data path step 3): which AuthorizationPolicies
// apply to the destination workload, then Istio's evaluation order — any matching DENY denies;
// AUDIT matches are only recorded; with no ALLOW policy the request is allowed; with some, one
// of them must match.
import type { MeshAuthorizationPolicy, MeshPod, MeshState } from '../state/model.js';
import type { AuthzDecision, AuthzRequest } from './request.js';
import { ruleMatches, ruleNeedsHttp } from './rule-match.js';
import { ROOT_NAMESPACE, byKey, selects } from './scope.js';

/**
 * Policies in force for a pod, by "namespace/name": the root namespace's without selector
 * (mesh-wide), the pod namespace's without selector, and those of either namespace whose
 * selector matches the pod's labels.
 */
export function applicablePolicies(state: MeshState, pod: MeshPod): MeshAuthorizationPolicy[] {
  const inScope = (p: MeshAuthorizationPolicy): boolean =>
    (p.namespace === ROOT_NAMESPACE || p.namespace === pod.namespace) && selects(p.selector, pod);
  return byKey([...state.authorizationPolicies.values()].filter(inScope));
}

/**
 * True when a policy in force for the pod has a rule on hosts, methods, paths or request
 * headers that can apply to this port: connections to it must be authorized per HTTP request.
 */
export function needsHttp(state: MeshState, pod: MeshPod, port: number): boolean {
  return applicablePolicies(state, pod).some((p) => p.rules.some((r) => ruleNeedsHttp(r, port)));
}

export function authorize(state: MeshState, req: AuthzRequest): AuthzDecision {
  const policies = applicablePolicies(state, req.destination.pod);
  if (policies.length === 0) return { allowed: true, reason: 'no policy applies' };
  const matches = (p: MeshAuthorizationPolicy): boolean => p.rules.some((r) => ruleMatches(r, p.action, req));

  const audited = policies.filter((p) => p.action === 'AUDIT' && matches(p)).map(keyOf);
  const decide = (d: AuthzDecision): AuthzDecision => (audited.length > 0 ? { ...d, audited } : d);

  const deny = policies.find((p) => p.action === 'DENY' && matches(p));
  if (deny) return decide({ allowed: false, reason: `denied by AuthorizationPolicy ${keyOf(deny)}`, policy: keyOf(deny) });
  const allows = policies.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return decide({ allowed: true, reason: 'no ALLOW policy applies' });
  const allow = allows.find(matches);
  if (allow) return decide({ allowed: true, reason: `allowed by AuthorizationPolicy ${keyOf(allow)}`, policy: keyOf(allow) });
  return decide({ allowed: false, reason: `no ALLOW policy matched (${allows.map(keyOf).join(', ')})` });
}

const keyOf = (p: MeshAuthorizationPolicy): string => `${p.namespace}/${p.name}`;
