// Lookups the L7 data path makes on the mesh state: which DestinationRule traffic policy
// applies to a call (Istio's lookup order), which nodemesh.io policies attach to a Service
// or route, and how a Gateway API RegularExpression is compiled (shared with validation).
import type { MeshDestinationRule, MeshFaultInjection, MeshLocalRateLimit, MeshState, PolicyTargetRef, TrafficPolicy } from './model.js';

/**
 * Istio's meshConfig.rootNamespace: DestinationRules here apply to clients in every namespace.
 * The same value as policy/'s ROOT_NAMESPACE (a test keeps them equal): state/ cannot import policy/.
 */
export const ROOT_NAMESPACE = 'nodemesh-system';

/**
 * A route's RegularExpression as the matcher applies it: to the whole value (path, header or
 * query value, gRPC service or method), JavaScript syntax. Validation compiles with this too,
 * so an accepted route never fails here.
 */
export function anchoredRegExp(source: string): RegExp {
  return new RegExp(`^(?:${source})$`);
}

export interface ServiceName {
  namespace: string;
  name: string;
}

/**
 * The DestinationRule for calls from `clientNamespace` to `service`: Istio looks in the
 * client's namespace, then the service's, then the root namespace; within one namespace the
 * oldest rule for that host wins (creation time, then name), as when Istio merges them.
 */
export function destinationRuleFor(state: MeshState, clientNamespace: string, service: ServiceName): MeshDestinationRule | undefined {
  const forService = [...state.destinationRules.values()].filter(
    (r) => r.service.namespace === service.namespace && r.service.name === service.name,
  );
  for (const namespace of [clientNamespace, service.namespace, ROOT_NAMESPACE]) {
    const [oldest] = forService.filter((r) => r.namespace === namespace).sort(oldestFirst);
    if (oldest) return oldest;
  }
  return undefined;
}

/**
 * The traffic policy for a call to `service` on Service port `port`; portLevelSettings for
 * that port replace the top-level loadBalancer, connectionPool and outlierDetection they set.
 * undefined when no DestinationRule applies.
 */
export function trafficPolicyFor(state: MeshState, clientNamespace: string, service: ServiceName, port: number): TrafficPolicy | undefined {
  const rule = destinationRuleFor(state, clientNamespace, service);
  if (!rule) return undefined;
  const portPolicy = rule.portLevel.find((p) => p.port === port)?.policy;
  if (!portPolicy) return rule.trafficPolicy;
  const merged: TrafficPolicy = {};
  const loadBalancer = portPolicy.loadBalancer ?? rule.trafficPolicy.loadBalancer;
  const connectionPool = portPolicy.connectionPool ?? rule.trafficPolicy.connectionPool;
  const outlierDetection = portPolicy.outlierDetection ?? rule.trafficPolicy.outlierDetection;
  if (loadBalancer) merged.loadBalancer = loadBalancer;
  if (connectionPool) merged.connectionPool = connectionPool;
  if (outlierDetection) merged.outlierDetection = outlierDetection;
  return merged;
}

export interface PolicyTarget extends ServiceName {
  kind: PolicyTargetRef['kind'];
}

export interface AttachedPolicies {
  faults: MeshFaultInjection[];
  rateLimits: MeshLocalRateLimit[];
}

/** The FaultInjections and LocalRateLimits whose targetRefs name `target`, by name. */
export function attachedPolicies(state: MeshState, target: PolicyTarget): AttachedPolicies {
  return {
    faults: attached(state.faultInjections.values(), target),
    rateLimits: attached(state.localRateLimits.values(), target),
  };
}

function attached<T extends { namespace: string; name: string; targetRefs: readonly PolicyTargetRef[] }>(policies: Iterable<T>, target: PolicyTarget): T[] {
  return [...policies]
    .filter((p) => p.namespace === target.namespace && p.targetRefs.some((r) => r.kind === target.kind && r.name === target.name))
    .sort((a, b) => compare(a.name, b.name));
}

/** A rule without creationTimestamp (standalone files) counts as oldest, like Kubernetes' zero time. */
function oldestFirst(a: MeshDestinationRule, b: MeshDestinationRule): number {
  return (a.createdMs ?? 0) - (b.createdMs ?? 0) || compare(a.name, b.name);
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
