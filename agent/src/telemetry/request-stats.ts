// What `nodemesh top` shows: rolling request stats per destination service, and per route
// within it, for each reporter, fed by the L7 proxy's request records. Bounded: a fixed number
// of services and routes, each with a fixed-size window; idle ones are swept.
import { RollingWindow, type WindowStats } from './rolling-window.js';
import type { RequestObserver, RequestRecord } from './request-record.js';

export interface RouteStats extends WindowStats {
  /** "HTTPRoute ns/name", or null for requests no route decided. */
  route: string | null;
}

export interface ServiceStats extends WindowStats {
  /** source: requests this node's pods sent; destination: requests this node's pods served. */
  reporter: RequestRecord['reporter'];
  /** "ns/name" of the destination Service; null when the record names none. */
  service: string | null;
  namespace: string | null;
  /** Open outbound connections of this node's pods to the service; null for the destination
   * reporter, as inbound flows name the pod they reach, not a service. */
  openConnections: number | null;
  /** Only when some request of the service matched a route; busiest first. */
  routes: RouteStats[];
}

export interface TopSnapshot {
  time: string;
  windowSeconds: number;
  /** Busiest first. */
  services: ServiceStats[];
}

/** The proxy's open connections, as the flow table holds them. */
export interface OpenConnection {
  direction: 'outbound' | 'inbound';
  service?: string;
}

export interface RequestStatsOptions {
  windowSeconds?: number;
  openConnections?: () => Iterable<OpenConnection>;
}

const DEFAULT_WINDOW_SECONDS = 10;
const MAX_SERVICES = 256;
const MAX_ROUTES_PER_SERVICE = 16;
const SERVICE_SAMPLES = 256;
const ROUTE_SAMPLES = 128;

/** Linkerd's and Istio's success: no 5xx (nor no answer at all) and, for gRPC, status OK. */
export const succeeded = (r: Pick<RequestRecord, 'status' | 'grpcStatus'>): boolean =>
  r.status > 0 && r.status < 500 && (r.grpcStatus === undefined || r.grpcStatus === 0);

interface ServiceEntry {
  reporter: RequestRecord['reporter'];
  service: string | null;
  namespace: string | null;
  window: RollingWindow;
  routes: Map<string | null, RollingWindow>;
}

export class RequestStats implements RequestObserver {
  readonly #windowSeconds: number;
  readonly #openConnections: () => Iterable<OpenConnection>;
  readonly #services = new Map<string, ServiceEntry>();

  constructor(options: RequestStatsOptions = {}) {
    this.#windowSeconds = options.windowSeconds ?? DEFAULT_WINDOW_SECONDS;
    this.#openConnections = options.openConnections ?? (() => []);
  }

  request(r: RequestRecord): void {
    const endMs = r.startMs + r.durationMs;
    const svc = r.destination.service;
    const service = svc ? `${svc.namespace}/${svc.name}` : null;
    const key = `${r.reporter}|${service ?? ''}`;
    let entry = this.#services.get(key);
    if (!entry) {
      this.#makeRoom(this.#services, (e) => e.window, MAX_SERVICES, endMs);
      entry = {
        reporter: r.reporter,
        service,
        namespace: svc?.namespace ?? (r.destination.endpoint?.kind === 'pod' ? r.destination.endpoint.pod.namespace : null),
        window: new RollingWindow(this.#windowSeconds, SERVICE_SAMPLES, endMs),
        routes: new Map(),
      };
      this.#services.set(key, entry);
    }
    const ok = succeeded(r);
    entry.window.add(endMs, r.durationMs, ok);
    const route = r.route ?? null;
    let window = entry.routes.get(route);
    if (!window) {
      this.#makeRoom(entry.routes, (w) => w, MAX_ROUTES_PER_SERVICE, endMs);
      window = new RollingWindow(this.#windowSeconds, ROUTE_SAMPLES, endMs);
      entry.routes.set(route, window);
    }
    window.add(endMs, r.durationMs, ok);
  }

  /** Services with requests in the window, optionally of one namespace. */
  snapshot(filter: { namespace?: string } = {}, nowMs = Date.now()): TopSnapshot {
    const open = new Map<string, number>();
    for (const c of this.#openConnections()) if (c.direction === 'outbound' && c.service) open.set(c.service, (open.get(c.service) ?? 0) + 1);
    const services: ServiceStats[] = [];
    for (const [key, e] of this.#services) {
      if (e.window.idle(nowMs)) {
        this.#services.delete(key);
        continue;
      }
      if (filter.namespace !== undefined && e.namespace !== filter.namespace) continue;
      const routes: RouteStats[] = [];
      for (const [route, w] of e.routes) {
        if (w.idle(nowMs)) e.routes.delete(route);
        else routes.push({ route, ...w.stats(nowMs) });
      }
      const named = routes.some((r) => r.route !== null);
      services.push({
        reporter: e.reporter,
        service: e.service,
        namespace: e.namespace,
        ...e.window.stats(nowMs),
        openConnections: e.reporter === 'source' ? (open.get(e.service ?? '') ?? 0) : null,
        routes: named ? routes.sort(busiest) : [],
      });
    }
    return { time: new Date(nowMs).toISOString(), windowSeconds: this.#windowSeconds, services: services.sort(busiest) };
  }

  /** Before adding to a full map: drop idle entries, else the oldest one. */
  #makeRoom<K, V>(map: Map<K, V>, windowOf: (v: V) => RollingWindow, max: number, nowMs: number): void {
    if (map.size < max) return;
    for (const [k, v] of map) if (windowOf(v).idle(nowMs)) map.delete(k);
    if (map.size >= max) map.delete(map.keys().next().value as K);
  }
}

const busiest = (a: WindowStats & { service?: string | null; route?: string | null }, b: typeof a) =>
  b.requests - a.requests || String(a.service ?? a.route ?? '').localeCompare(String(b.service ?? b.route ?? ''));
