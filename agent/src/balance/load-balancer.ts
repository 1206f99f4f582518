// Per-request endpoint choice for the L7 path: the small interface every balancer implements
// and the registry that maps a DestinationRule loadBalancer setting to one (grpc-js style).
import type { LoadBalancerSettings } from '../state/model.js';
import { LeastRequest } from './load-balancer-least-request.js';
import { RandomPick } from './load-balancer-random.js';
import { RingHash } from './load-balancer-ring-hash.js';
import { RoundRobinPick } from './load-balancer-round-robin.js';

/** What a balancer sees of one endpoint; the EndpointSet keeps these values live. */
export interface BalancedEndpoint {
  /** "ip:port" */
  readonly key: string;
  /** Position in the list last given to setEndpoints. */
  readonly index: number;
  /** Requests in flight to this endpoint. */
  readonly outstanding: number;
  /** Peak-EWMA latency estimate in ms at `now`. */
  rttEstimateMs(now: number): number;
}

/** What the EndpointSet lends a balancer: its clock and randomness, injectable for tests. */
export interface BalancerHelper {
  now(): number;
  /** Uniform in [0, 1). */
  random(): number;
}

export interface LoadBalancer<T extends BalancedEndpoint> {
  /** Every endpoint of the destination, in index order; called after each config update. */
  setEndpoints(endpoints: readonly T[]): void;
  /**
   * Chooses one of `candidates`: a non-empty subset of the endpoints, in index order, already
   * without ejected endpoints and those the request tried before (when others are left).
   */
  pick(candidates: readonly T[], hashKey: string | undefined): T;
}

export type LoadBalancerFactory = <T extends BalancedEndpoint>(helper: BalancerHelper) => LoadBalancer<T>;

const registry = new Map<string, LoadBalancerFactory>();

export function registerLoadBalancer(name: string, factory: LoadBalancerFactory): void {
  registry.set(name, factory);
}

export function createLoadBalancer<T extends BalancedEndpoint>(name: string, helper: BalancerHelper): LoadBalancer<T> {
  const factory = registry.get(name);
  if (!factory) throw new Error(`no load balancer registered as "${name}"`);
  return factory<T>(helper);
}

/**
 * The registered name for a DestinationRule loadBalancer. Istio's default, when none is set,
 * is LEAST_REQUEST; consistentHash is a ring hash (Istio's default consistent-hash algorithm).
 */
export function loadBalancerName(settings: LoadBalancerSettings | undefined): string {
  if (!settings) return 'LEAST_REQUEST';
  return 'simple' in settings ? settings.simple : 'RING_HASH';
}

registerLoadBalancer('ROUND_ROBIN', (helper) => new RoundRobinPick(helper));
registerLoadBalancer('RANDOM', (helper) => new RandomPick(helper));
registerLoadBalancer('LEAST_REQUEST', (helper) => new LeastRequest(helper));
registerLoadBalancer('RING_HASH', (helper) => new RingHash(helper));
