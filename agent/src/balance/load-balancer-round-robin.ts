// ROUND_ROBIN for the L7 path: each request goes to the next eligible endpoint after the one
// picked last, so skipped (ejected or already tried) endpoints do not disturb the rotation.
import type { BalancedEndpoint, BalancerHelper, LoadBalancer } from './balancer.js';

export class RoundRobinPick<T extends BalancedEndpoint> implements LoadBalancer<T> {
  readonly #helper: BalancerHelper;
  /** Index of the last pick; undefined until the first endpoints arrive. */
  #last: number | undefined;

  constructor(helper: BalancerHelper) {
    this.#helper = helper;
  }

  setEndpoints(endpoints: readonly T[]): void {
    // Start at a random place, as Envoy does, so node proxies do not all begin with endpoint 0.
    if (this.#last === undefined && endpoints.length > 0) {
      this.#last = Math.floor(this.#helper.random() * endpoints.length) - 1;
    }
  }

  pick(candidates: readonly T[]): T {
    const last = this.#last ?? -1;
    const next = candidates.find((c) => c.index > last) ?? candidates[0]!;
    this.#last = next.index;
    return next;
  }
}
