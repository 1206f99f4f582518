// Per-endpoint latency estimate for the L7 balancer: Linkerd's peak EWMA (tower `PeakEwma`,
// after Finagle), which reacts to a slow endpoint at once and forgives it over ~decay time.

/** linkerd2-proxy's EWMA_DEFAULT_RTT: optimistic, so a new endpoint gets traffic early. */
export const DEFAULT_RTT_MS = 30;
/** linkerd2-proxy's EWMA_DECAY: the time constant of the exponential decay. */
export const DECAY_MS = 10_000;
/**
 * The least a request that got no response (connect failure, reset, timeout) counts as: tower's
 * own pessimistic default RTT. Without it an endpoint that refuses connections in 1 ms would look
 * like the fastest and draw the traffic (a black hole) until outlier detection, if configured,
 * ejects it.
 */
export const FAILURE_RTT_MS = 1_000;

/**
 * The estimate decays exponentially towards 0 while time passes (tower decays it on every load
 * read; here it is a function of time, so it does not depend on how often the balancer looks).
 * An observation slower than the current estimate replaces it (the peak); a faster one is
 * blended in with weight 1 - e^(-elapsed/decay), elapsed being the time since the last update.
 */
export class PeakEwma {
  #estimateMs: number;
  #updatedAt: number;

  constructor(now: number) {
    this.#estimateMs = DEFAULT_RTT_MS;
    this.#updatedAt = now;
  }

  estimateMs(now: number): number {
    return this.#estimateMs * this.#decay(now);
  }

  observe(rttMs: number, now: number): void {
    const decay = this.#decay(now);
    const current = this.#estimateMs * decay;
    this.#estimateMs = rttMs > current ? rttMs : current + rttMs * (1 - decay);
    this.#updatedAt = Math.max(now, this.#updatedAt);
  }

  #decay(now: number): number {
    return Math.exp(-Math.max(0, now - this.#updatedAt) / DECAY_MS);
  }
}
