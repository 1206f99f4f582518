// One rolling window of request outcomes for `nodemesh top`: per-second counters for rates and
// success rate, and a fixed ring of the latest durations for percentiles. Memory is fixed at
// construction, whatever the request rate.

export interface LatencyMs {
  p50: number;
  p95: number;
  p99: number;
}

export interface WindowStats {
  /** Requests that ended within the window. */
  requests: number;
  /** Requests per second over the window (or since the first request, if later). */
  rps: number;
  /** Share of `requests` that succeeded, 0..1; null without requests. */
  successRate: number | null;
  /** Over the latest `samples` requests of the window; null without requests. */
  latencyMs: LatencyMs | null;
}

/** A single request can only be counted over at least this long: no 1000 rps from one hit. */
const MIN_SPAN_MS = 1000;

export class RollingWindow {
  readonly #seconds: number;
  /** Which second (since the epoch) each bucket counts; bucket i holds seconds ≡ i mod #seconds. */
  readonly #second: Float64Array;
  readonly #requests: Uint32Array;
  readonly #successes: Uint32Array;
  readonly #durations: Float64Array;
  readonly #endedAt: Float64Array;
  #next = 0;
  #filled = 0;
  readonly #firstMs: number;
  #lastMs: number;

  constructor(seconds: number, samples: number, firstMs: number) {
    this.#seconds = seconds;
    this.#second = new Float64Array(seconds).fill(-1);
    this.#requests = new Uint32Array(seconds);
    this.#successes = new Uint32Array(seconds);
    this.#durations = new Float64Array(samples);
    this.#endedAt = new Float64Array(samples);
    this.#firstMs = firstMs;
    this.#lastMs = firstMs;
  }

  /** A request that ended at `endMs` (epoch ms). */
  add(endMs: number, durationMs: number, success: boolean): void {
    const second = Math.floor(endMs / 1000);
    const i = second % this.#seconds;
    if (this.#second[i] !== second) {
      // A late record for a second already overwritten is older than the window: dropped.
      if ((this.#second[i] as number) > second) return;
      this.#second[i] = second;
      this.#requests[i] = 0;
      this.#successes[i] = 0;
    }
    (this.#requests[i] as number) += 1;
    if (success) (this.#successes[i] as number) += 1;
    this.#durations[this.#next] = durationMs;
    this.#endedAt[this.#next] = endMs;
    this.#next = (this.#next + 1) % this.#durations.length;
    this.#filled = Math.min(this.#filled + 1, this.#durations.length);
    this.#lastMs = Math.max(this.#lastMs, endMs);
  }

  /** Nothing ended within the window before `nowMs`: the entry can go. */
  idle(nowMs: number): boolean {
    return this.#lastMs < this.#oldestMs(nowMs);
  }

  stats(nowMs: number): WindowStats {
    const oldestSecond = Math.floor(nowMs / 1000) - this.#seconds + 1;
    let requests = 0;
    let successes = 0;
    for (let i = 0; i < this.#seconds; i++) {
      if ((this.#second[i] as number) < oldestSecond) continue;
      requests += this.#requests[i] as number;
      successes += this.#successes[i] as number;
    }
    const span = Math.max(MIN_SPAN_MS, nowMs - Math.max(this.#oldestMs(nowMs), this.#firstMs));
    const recent: number[] = [];
    const oldestMs = this.#oldestMs(nowMs);
    for (let i = 0; i < this.#filled; i++) if ((this.#endedAt[i] as number) >= oldestMs) recent.push(this.#durations[i] as number);
    return {
      requests,
      rps: round(requests / (span / 1000)),
      successRate: requests === 0 ? null : round(successes / requests, 4),
      latencyMs: recent.length === 0 ? null : percentiles(recent),
    };
  }

  /** Start of the oldest second still in the window. */
  #oldestMs(nowMs: number): number {
    return (Math.floor(nowMs / 1000) - this.#seconds + 1) * 1000;
  }
}

/** Nearest-rank percentiles (the smallest sample with at least p of the samples at or below it). */
export function percentiles(values: number[]): LatencyMs {
  const sorted = Float64Array.from(values).sort();
  const at = (p: number) => round(sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] as number);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
