// LEAST_REQUEST, the default L7 balancer: Linkerd's power of two choices over peak-EWMA cost,
// so a slow or busy endpoint loses traffic at once and wins it back as its estimate decays.
import type { BalancedEndpoint, BalancerHelper, LoadBalancer } from './balancer.js';

export class LeastRequest<T extends BalancedEndpoint> implements LoadBalancer<T> {
  readonly #helper: BalancerHelper;

  constructor(helper: BalancerHelper) {
    this.#helper = helper;
  }

  setEndpoints(): void {}

  /** Two distinct random candidates; the lower cost wins, the first on a tie (as tower's p2c). */
  pick(candidates: readonly T[]): T {
    if (candidates.length === 1) return candidates[0]!;
    const i = Math.floor(this.#helper.random() * candidates.length);
    let j = Math.floor(this.#helper.random() * (candidates.length - 1));
    if (j >= i) j += 1;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const now = this.#helper.now();
    return cost(b, now) < cost(a, now) ? b : a;
  }
}

/** tower's PeakEwma cost: latency estimate × (requests in flight + this one). */
function cost(endpoint: BalancedEndpoint, now: number): number {
  return endpoint.rttEstimateMs(now) * (endpoint.outstanding + 1);
}
