// One destination (Service port) of the L7 proxy: picks an endpoint per request, tracks the
// requests in flight and their latency, and ejects failing endpoints (outlier detection).
import type { Endpoint } from '../state/mesh-index.js';
import type { LoadBalancerSettings, OutlierDetectionSettings } from '../state/model.js';
import { createLoadBalancer, loadBalancerName } from './load-balancer.js';
import type { BalancedEndpoint, LoadBalancer } from './balancer.js';
import { OutlierDetector, type RequestResult } from './outlier-detector.js';
import { FAILURE_RTT_MS, PeakEwma } from './peak-ewma.js';

export interface EndpointSetOptions {
  /** Milliseconds; default a monotonic clock in epoch ms (performance.timeOrigin + now()). */
  now?: () => number;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
}

export interface RequestHandle {
  /** call exactly once */
  end(result: RequestResult): void;
}

/** Per-endpoint state the balancers read; kept across updates while the endpoint stays. */
class EndpointState implements BalancedEndpoint {
  endpoint: Endpoint;
  readonly key: string;
  index = 0;
  outstanding = 0;
  readonly #ewma: PeakEwma;

  constructor(endpoint: Endpoint, key: string, now: number) {
    this.endpoint = endpoint;
    this.key = key;
    this.#ewma = new PeakEwma(now);
  }

  rttEstimateMs(now: number): number {
    return this.#ewma.estimateMs(now);
  }

  /** A request without a response counts as at least FAILURE_RTT_MS: failing fast is not fast. */
  recordLatency(elapsedMs: number, failed: boolean, now: number): void {
    this.#ewma.observe(failed ? Math.max(elapsedMs, FAILURE_RTT_MS) : elapsedMs, now);
  }
}

const endpointKey = (e: Endpoint): string => `${e.ip}:${e.port}`;

export class EndpointSet {
  readonly #now: () => number;
  readonly #random: () => number;
  /** Key "ip:port"; per-endpoint state survives updates that keep the endpoint. */
  #states = new Map<string, EndpointState>();
  #list: EndpointState[] = [];
  #balancerName = '';
  #balancer: LoadBalancer<EndpointState> | undefined;
  #detector: OutlierDetector | undefined;
  #timer: NodeJS.Timeout | undefined;
  #timerIntervalMs = 0;
  #outstanding = 0;
  #closed = false;

  constructor(opts: EndpointSetOptions = {}) {
    this.#now = opts.now ?? (() => performance.timeOrigin + performance.now());
    this.#random = opts.random ?? Math.random;
  }

  /**
   * Applies a new endpoint list and the destination's DestinationRule settings. Endpoints are
   * identified by "ip:port" (duplicates collapse to the first); those that stay keep their
   * latency estimate, in-flight count and ejection state, new ones start fresh.
   */
  update(
    endpoints: readonly Endpoint[],
    lb: LoadBalancerSettings | undefined,
    outlier: OutlierDetectionSettings | undefined,
  ): void {
    const now = this.#now();
    const states = new Map<string, EndpointState>();
    for (const endpoint of endpoints) {
      const key = endpointKey(endpoint);
      if (states.has(key)) continue;
      const state = this.#states.get(key) ?? new EndpointState(endpoint, key, now);
      state.endpoint = endpoint;
      state.index = states.size;
      states.set(key, state);
    }
    this.#states = states;
    this.#list = [...states.values()];

    const name = loadBalancerName(lb);
    if (!this.#balancer || name !== this.#balancerName) {
      this.#balancer = createLoadBalancer<EndpointState>(name, { now: this.#now, random: this.#random });
      this.#balancerName = name;
    }
    this.#balancer.setEndpoints(this.#list);

    if (outlier) {
      if (this.#detector) this.#detector.configure(outlier);
      else this.#detector = new OutlierDetector(outlier);
      this.#detector.sync(new Set(states.keys()));
      this.#arm(outlier.intervalMs);
    } else {
      this.#detector = undefined;
      this.#disarm();
    }
  }

  /**
   * An endpoint for one request (attempt), or undefined when the destination has none.
   * Ejected endpoints are skipped; when every endpoint is ejected all are eligible again
   * (Envoy's panic mode; Istio's minHealthPercent defaults to 0, so only at zero healthy).
   * Endpoints in `avoid` are skipped unless no other is left (Envoy's previous_hosts).
   */
  pick(opts: { hashKey?: string; avoid?: ReadonlySet<string> } = {}): Endpoint | undefined {
    if (this.#list.length === 0 || !this.#balancer) return undefined;
    let candidates = this.#list;
    const detector = this.#detector;
    if (detector && detector.ejectedCount > 0) {
      const healthy = candidates.filter((s) => !detector.isEjected(s.key));
      if (healthy.length > 0) candidates = healthy;
    }
    const avoid = opts.avoid;
    if (avoid && avoid.size > 0) {
      const fresh = candidates.filter((s) => !avoid.has(s.key));
      if (fresh.length > 0) candidates = fresh;
    }
    return this.#balancer.pick(candidates, opts.hashKey).endpoint;
  }

  /**
   * Starts a request to `endpoint` (normally one pick returned). end() records its latency in
   * the endpoint's peak EWMA and its result in outlier detection.
   */
  begin(endpoint: Endpoint): RequestHandle {
    const key = endpointKey(endpoint);
    const start = this.#now();
    // An endpoint removed by an update meanwhile gets a detached state: counted, then dropped.
    const state = this.#states.get(key) ?? new EndpointState(endpoint, key, start);
    state.outstanding++;
    this.#outstanding++;
    let ended = false;
    return {
      end: (result) => {
        if (ended) return;
        ended = true;
        state.outstanding--;
        this.#outstanding--;
        const now = this.#now();
        // Like tower's balancer, which only picks connected endpoints: setting up a connection
        // is not the endpoint's latency, or a new endpoint would be shunned for its handshake.
        state.recordLatency(Math.max(0, now - start - (result.connectMs ?? 0)), result.failure !== undefined, now);
        this.#detector?.report(key, result, now);
      },
    };
  }

  get outstanding(): number {
    return this.#outstanding;
  }

  /** Endpoints ejected now; `ejections` is the multiplier of the base ejection time used. */
  ejected(): Array<{ endpoint: string; untilMs: number; ejections: number }> {
    return this.#detector?.ejected() ?? [];
  }

  close(): void {
    this.#closed = true;
    this.#disarm();
  }

  /** One sweep timer per set, unref'd so an idle destination never keeps the process up. */
  #arm(intervalMs: number): void {
    if (this.#closed || (this.#timer && this.#timerIntervalMs === intervalMs)) return;
    this.#disarm();
    this.#timerIntervalMs = intervalMs;
    this.#timer = setInterval(() => this.#detector?.sweep(this.#now()), intervalMs);
    this.#timer.unref();
  }

  #disarm(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
