// One upstream destination of the L7 proxy (a Service port, seen from one client namespace,
// whose DestinationRule applies): its endpoint set and balancer, and the circuit breakers of
// Istio's connectionPool — requests in flight, HTTP/1.1 requests waiting for a connection,
// retries in flight — which answer overflow at once instead of queueing without bound.
import { EndpointSet } from '../../balance/endpoint-set.js';
import { RetryBudget } from '../../balance/retry-budget.js';
import type { ServiceDestination } from '../../state/mesh-index.js';
import type { ConnectionPoolSettings, LoadBalancerSettings, TrafficPolicy } from '../../state/model.js';
import type { PoolLimits } from './upstream-pool.js';

/** Upstream connections idle this long are closed unless the DestinationRule says otherwise. */
const DEFAULT_IDLE_MS = 60_000;

export type Admission = { release(): void } | { overflow: string };

export class Cluster {
  readonly name: string;
  readonly endpoints = new EndpointSet();
  #pool: ConnectionPoolSettings = {};
  #loadBalancer: LoadBalancerSettings | undefined;
  #budget = new RetryBudget();
  #active = 0;
  #h1Busy = 0;
  readonly #pending: Array<() => void> = [];

  constructor(name: string) {
    this.name = name;
  }

  update(dest: ServiceDestination, policy: TrafficPolicy | undefined): void {
    this.endpoints.update(dest.endpoints, policy?.loadBalancer, policy?.outlierDetection);
    const pool = policy?.connectionPool ?? {};
    if (pool.maxRetries !== this.#pool.maxRetries) this.#budget = new RetryBudget({ ...(pool.maxRetries !== undefined ? { maxRetries: pool.maxRetries } : {}) });
    this.#pool = pool;
    this.#loadBalancer = policy?.loadBalancer;
  }

  get loadBalancer(): LoadBalancerSettings | undefined {
    return this.#loadBalancer;
  }

  get limits(): PoolLimits {
    return {
      idleTimeoutMs: this.#pool.idleTimeoutMs ?? DEFAULT_IDLE_MS,
      ...(this.#pool.maxRequestsPerConnection !== undefined ? { maxRequestsPerConnection: this.#pool.maxRequestsPerConnection } : {}),
    };
  }

  get connectTimeoutMs(): number | undefined {
    return this.#pool.connectTimeoutMs;
  }

  /**
   * A slot for one upstream request (an attempt). HTTP/1.1 holds one of maxConnections
   * connections for the whole exchange and may wait for one among http1MaxPendingRequests
   * others; every protocol counts against http2MaxRequests.
   */
  admit(protocol: 'h1' | 'h2', signal: AbortSignal): Promise<Admission> | Admission {
    const maxRequests = this.#pool.http2MaxRequests;
    if (maxRequests !== undefined && this.#active >= maxRequests) {
      return { overflow: `max requests (${maxRequests}) in flight to ${this.name}` };
    }
    if (protocol === 'h2') return this.#grant(false);
    const maxConnections = this.#pool.maxConnections;
    if (maxConnections === undefined || this.#h1Busy < maxConnections) return this.#grant(true);
    const maxPending = this.#pool.http1MaxPendingRequests;
    if (maxPending !== undefined && this.#pending.length >= maxPending) {
      return { overflow: `max pending requests (${maxPending}) waiting for a connection to ${this.name}` };
    }
    return new Promise((resolve) => {
      const go = () => {
        signal.removeEventListener('abort', give);
        resolve(this.#grant(true));
      };
      const give = () => {
        const i = this.#pending.indexOf(go);
        if (i >= 0) this.#pending.splice(i, 1);
        resolve({ overflow: 'request abandoned while waiting for a connection' });
      };
      signal.addEventListener('abort', give, { once: true });
      this.#pending.push(go);
    });
  }

  /** A retry may start (Envoy's retry budget and DestinationRule maxRetries), else null. */
  retry(): (() => void) | null {
    return this.#budget.tryAcquire(this.#active);
  }

  close(): void {
    this.endpoints.close();
  }

  #grant(h1: boolean): Admission {
    this.#active += 1;
    if (h1) this.#h1Busy += 1;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#active -= 1;
        if (!h1) return;
        this.#h1Busy -= 1;
        this.#pending.shift()?.();
      },
    };
  }
}
