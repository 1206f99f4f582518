// One upstream destination of the outbound side (a Service port, seen from one client namespace,
// whose DestinationRule applies): its endpoint set and balancer, and the circuit breakers of
// Istio's connectionPool — requests in flight, HTTP/1.1 requests waiting for a connection,
// retries in flight — which answer overflow at once instead of queueing without bound.
import { EndpointSet } from '../balance/endpoint-set.js';
import type { RequestResult } from '../balance/outlier-detector.js';
import { RetryBudget } from '../balance/retry-budget.js';
import { first, type HeaderMap } from '../http/headers.js';
import type { Endpoint, MeshIndex, ServiceDestination } from '../state/mesh-index.js';
import type { ConnectionPoolSettings, LoadBalancerSettings, TrafficPolicy } from '../state/model.js';
import { trafficPolicyFor } from '../state/traffic.js';
import type { PoolLimits } from './http/upstream-pool.js';

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

  /** The key a consistent-hash load balancer places this request or connection by, if any. */
  hashKey(headers: HeaderMap, sourceIP: string): { hashKey?: string } {
    const lb = this.#loadBalancer;
    if (!lb || !('consistentHash' in lb)) return {};
    const h = lb.consistentHash;
    if ('useSourceIp' in h) return { hashKey: sourceIP };
    const value = first(headers[h.httpHeaderName]);
    return value === undefined ? {} : { hashKey: value };
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

/**
 * One L4 connection (or Upgrade/CONNECT tunnel) to `endpoint` of `cluster`: in flight while it
 * is open (least-request balances connections), its connect time taken as the endpoint's
 * latency, a connect that failed reported to outlier detection as Envoy's TCP proxy does.
 * `refused` says how a dial that resolved without a connection ended (undefined: connected);
 * a dial that rejects is a connect failure. done() once the connection is over.
 */
export async function connectionTo<T>(
  cluster: Cluster,
  endpoint: Endpoint,
  dial: () => Promise<T>,
  refused: (result: T) => RequestResult | undefined = () => undefined,
): Promise<{ result: T; done(): void }> {
  const handle = cluster.endpoints.begin(endpoint);
  const started = performance.now();
  let result: T;
  try {
    result = await dial();
  } catch (err) {
    handle.end({ failure: 'connect' });
    throw err;
  }
  const refusal = refused(result);
  if (refusal) {
    handle.end(refusal);
    return { result, done: () => {} };
  }
  const connectMs = performance.now() - started;
  return { result, done: () => handle.end({ connectMs: performance.now() - started - connectMs }) };
}

/**
 * The clusters of this node's outbound side, L4 and L7 alike: one per Service port and client
 * namespace (whose DestinationRule applies), so connections and requests to a destination
 * share its balancer, requests in flight and outlier detection.
 */
export class Clusters {
  readonly #clusters = new Map<string, { cluster: Cluster; dest: ServiceDestination | undefined }>();

  /** The cluster for `dest` as clients in `clientNamespace` see it, up to date with `view`. */
  get(view: MeshIndex, clientNamespace: string, dest: ServiceDestination): Cluster {
    const name = `${dest.service.namespace}/${dest.service.name}:${dest.port.port}`;
    const key = `${clientNamespace}|${name}`;
    let entry = this.#clusters.get(key);
    if (!entry) {
      entry = { cluster: new Cluster(name), dest: undefined };
      this.#clusters.set(key, entry);
    }
    // Endpoints and policy change only with the configuration, and each configuration has its
    // own destinations: once per destination object, not per request.
    if (entry.dest !== dest) {
      entry.cluster.update(dest, trafficPolicyFor(view.state, clientNamespace, dest.service, dest.port.port));
      entry.dest = dest;
    }
    return entry.cluster;
  }

  /** Drops the clusters of destinations `view` no longer has. */
  retain(view: MeshIndex): void {
    const live = new Set<string>();
    for (const d of view.destinations.values()) if (d.kind === 'service') live.add(`${d.service.namespace}/${d.service.name}:${d.port.port}`);
    for (const [key, { cluster }] of this.#clusters) {
      if (live.has(key.split('|')[1] ?? '')) continue;
      cluster.close();
      this.#clusters.delete(key);
    }
  }

  /** Endpoints ejected by outlier detection now, by destination ("ns/name:port"). */
  ejections(): Map<string, number> {
    const out = new Map<string, number>();
    for (const { cluster } of this.#clusters.values()) {
      const n = cluster.endpoints.ejected().length;
      if (n > 0) out.set(cluster.name, (out.get(cluster.name) ?? 0) + n);
    }
    return out;
  }

  close(): void {
    for (const { cluster } of this.#clusters.values()) cluster.close();
    this.#clusters.clear();
  }
}
