// Delay before a retry of an L7 request: Envoy's fully jittered exponential backoff, so that
// requests that failed together do not retry together.

/**
 * Envoy's JitteredExponentialBackOffStrategy: the n-th retry waits a uniformly random whole
 * number of ms in [0, min(base × 2^(n-1), max)); with the defaults (25 ms, max 10 × base):
 * [0, 25), [0, 50), [0, 100), [0, 200), then [0, 250).
 */
export function retryBackoffMs(
  retryNumber: number,
  baseMs = 25,
  maxMs = 10 * baseMs,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(baseMs * 2 ** (Math.max(1, retryNumber) - 1), maxMs);
  return Math.floor(random() * ceiling);
}
