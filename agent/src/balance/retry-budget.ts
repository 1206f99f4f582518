// Caps retries to one destination so that retries cannot multiply load during an outage:
// Envoy's circuit-breaker retry_budget, plus Istio's connectionPool.http.maxRetries.

/** Envoy's retry_budget defaults. */
export const DEFAULT_BUDGET_PERCENT = 20;
export const DEFAULT_MIN_RETRY_CONCURRENCY = 3;

export class RetryBudget {
  readonly #budgetPercent: number;
  readonly #minRetryConcurrency: number;
  readonly #maxRetries: number;
  #inFlight = 0;

  constructor(opts: { budgetPercent?: number; minRetryConcurrency?: number; maxRetries?: number } = {}) {
    this.#budgetPercent = opts.budgetPercent ?? DEFAULT_BUDGET_PERCENT;
    this.#minRetryConcurrency = opts.minRetryConcurrency ?? DEFAULT_MIN_RETRY_CONCURRENCY;
    this.#maxRetries = opts.maxRetries ?? Infinity;
  }

  /**
   * A release function when a retry may start now given the destination's active requests
   * (incl. retries), else null. Retries in flight must stay below both
   * max(minRetryConcurrency, floor(budgetPercent % of activeRequests)) (Envoy truncates too)
   * and maxRetries. Releasing twice is harmless.
   */
  tryAcquire(activeRequests: number): (() => void) | null {
    const budget = Math.max(this.#minRetryConcurrency, Math.floor((this.#budgetPercent * activeRequests) / 100));
    if (this.#inFlight >= budget || this.#inFlight >= this.#maxRetries) return null;
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
    };
  }

  get inFlight(): number {
    return this.#inFlight;
  }
}
