// Per-request endpoint choice for the L7 path: a DestinationRule loadBalancer setting to the
// balancer that implements it.
import type { LoadBalancerSettings } from '../state/model.js';
import type { BalancedEndpoint, BalancerHelper, LoadBalancer } from './balancer.js';
import { LeastRequest } from './load-balancer-least-request.js';
import { RandomPick } from './load-balancer-random.js';
import { RingHash } from './load-balancer-ring-hash.js';
import { RoundRobinPick } from './load-balancer-round-robin.js';

type LoadBalancerFactory = <T extends BalancedEndpoint>(helper: BalancerHelper) => LoadBalancer<T>;

const BALANCERS: ReadonlyMap<string, LoadBalancerFactory> = new Map<string, LoadBalancerFactory>([
  ['ROUND_ROBIN', (helper) => new RoundRobinPick(helper)],
  ['RANDOM', (helper) => new RandomPick(helper)],
  ['LEAST_REQUEST', (helper) => new LeastRequest(helper)],
  ['RING_HASH', (helper) => new RingHash(helper)],
]);

export function createLoadBalancer<T extends BalancedEndpoint>(name: string, helper: BalancerHelper): LoadBalancer<T> {
  const factory = BALANCERS.get(name);
  if (!factory) throw new Error(`no load balancer named "${name}"`);
  return factory<T>(helper);
}

/**
 * The balancer's name for a DestinationRule loadBalancer. Istio's default, when none is set,
 * is LEAST_REQUEST; consistentHash is a ring hash (Istio's default consistent-hash algorithm).
 */
export function loadBalancerName(settings: LoadBalancerSettings | undefined): string {
  if (!settings) return 'LEAST_REQUEST';
  return 'simple' in settings ? settings.simple : 'RING_HASH';
}
