// Passive health checking for one destination: Envoy's consecutive-5xx and consecutive
// gateway-error outlier detection, as an Istio DestinationRule outlierDetection configures it.
import type { OutlierDetectionSettings } from '../state/model.js';

/** How one request to an endpoint ended, as the proxy reports it. */
export interface RequestResult {
  status?: number;
  failure?: 'connect' | 'reset' | 'timeout';
  /** Part of the request's time spent opening a connection; left out of its latency. */
  connectMs?: number;
}

/** Envoy's default max_ejection_time, which Istio leaves unset; a longer base time wins. */
export const MAX_EJECTION_TIME_MS = 300_000;

interface HostRecord {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** Multiplier of the base ejection time: +1 per ejection, -1 per sweep found not ejected. */
  multiplier: number;
  /** Set while ejected. */
  untilMs: number | undefined;
}

/**
 * Semantics (Envoy's outlier_detection_impl, Istio defaults in the model):
 * - a status 500..599 or a local failure (connect, reset, timeout: Envoy maps these to 5xx
 *   since Istio does not split local-origin errors) counts as a 5xx; 502, 503, 504 and local
 *   failures count as gateway errors; another 5xx resets the gateway count, any other result
 *   resets both. A threshold of 0 disables that detector.
 * - reaching a threshold ejects at once if the ejected share is below maxEjectionPercent
 *   (so one endpoint can always be ejected unless the maximum is 0); otherwise the endpoint
 *   stays and its next error tries again.
 * - the n-th ejection in a row lasts n × baseEjectionTime, at most max(300 s, base).
 * - every interval a sweep restores the endpoints whose time is up (counters reset) and lowers
 *   by one the multiplier of the endpoints it finds not ejected.
 * - results for an ejected endpoint (requests still in flight) are not counted.
 */
export class OutlierDetector {
  #settings: OutlierDetectionSettings;
  readonly #hosts = new Map<string, HostRecord>();
  #ejectedCount = 0;

  constructor(settings: OutlierDetectionSettings) {
    this.#settings = settings;
  }

  /** New thresholds and times apply from now on; running ejections keep their end time. */
  configure(settings: OutlierDetectionSettings): void {
    this.#settings = settings;
  }

  /** Tracks exactly these endpoints: state of those that stay is kept, removed ones dropped. */
  sync(keys: ReadonlySet<string>): void {
    for (const [key, host] of this.#hosts) {
      if (keys.has(key)) continue;
      if (host.untilMs !== undefined) this.#ejectedCount--;
      this.#hosts.delete(key);
    }
    for (const key of keys) {
      if (!this.#hosts.has(key)) {
        this.#hosts.set(key, { consecutive5xx: 0, consecutiveGateway: 0, multiplier: 0, untilMs: undefined });
      }
    }
  }

  get ejectedCount(): number {
    return this.#ejectedCount;
  }

  isEjected(key: string): boolean {
    return this.#hosts.get(key)?.untilMs !== undefined;
  }

  report(key: string, result: RequestResult, now: number): void {
    const host = this.#hosts.get(key);
    if (!host || host.untilMs !== undefined) return;
    const { status, failure } = result;
    const is5xx = failure !== undefined || (status !== undefined && status >= 500 && status <= 599);
    if (!is5xx) {
      host.consecutive5xx = 0;
      host.consecutiveGateway = 0;
      return;
    }
    const isGateway = failure !== undefined || status === 502 || status === 503 || status === 504;
    host.consecutiveGateway = isGateway ? host.consecutiveGateway + 1 : 0;
    host.consecutive5xx += 1;
    const { consecutive5xxErrors, consecutiveGatewayErrors } = this.#settings;
    const tripped =
      (consecutive5xxErrors > 0 && host.consecutive5xx >= consecutive5xxErrors) ||
      (consecutiveGatewayErrors > 0 && host.consecutiveGateway >= consecutiveGatewayErrors);
    if (tripped) this.#eject(host, now);
  }

  sweep(now: number): void {
    for (const host of this.#hosts.values()) {
      if (host.untilMs === undefined) {
        if (host.multiplier > 0) host.multiplier--;
      } else if (now >= host.untilMs) {
        host.untilMs = undefined;
        host.consecutive5xx = 0;
        host.consecutiveGateway = 0;
        this.#ejectedCount--;
      }
    }
  }

  ejected(): Array<{ endpoint: string; untilMs: number; ejections: number }> {
    const out: Array<{ endpoint: string; untilMs: number; ejections: number }> = [];
    for (const [endpoint, host] of this.#hosts) {
      if (host.untilMs !== undefined) out.push({ endpoint, untilMs: host.untilMs, ejections: host.multiplier });
    }
    return out;
  }

  #eject(host: HostRecord, now: number): void {
    const { maxEjectionPercent, baseEjectionTimeMs } = this.#settings;
    if ((100 * this.#ejectedCount) / this.#hosts.size >= maxEjectionPercent) return;
    const maxTime = Math.max(MAX_EJECTION_TIME_MS, baseEjectionTimeMs);
    if (baseEjectionTimeMs * host.multiplier < maxTime) host.multiplier++;
    host.untilMs = now + Math.min(baseEjectionTimeMs * host.multiplier, maxTime);
    this.#ejectedCount++;
  }
}
