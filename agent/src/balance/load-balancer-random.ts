// RANDOM for the L7 path: a uniform choice among the eligible endpoints.
import type { BalancedEndpoint, BalancerHelper, LoadBalancer } from './balancer.js';

export class RandomPick<T extends BalancedEndpoint> implements LoadBalancer<T> {
  readonly #helper: BalancerHelper;

  constructor(helper: BalancerHelper) {
    this.#helper = helper;
  }

  setEndpoints(): void {}

  pick(candidates: readonly T[]): T {
    return candidates[Math.floor(this.#helper.random() * candidates.length)]!;
  }
}
