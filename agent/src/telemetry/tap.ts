// The tap hub behind `nodemesh tap`: live request records to subscribers, each with its own
// filters and its own rate cap. With no subscriber a record costs one size check.
import { NodemeshError } from '../errors.js';
import { podName } from '../state/mesh-index.js';
import { matchesName } from './flow-filter.js';
import { flowEndpoint, type FlowEndpoint } from './flow-table.js';
import { type ResponseFlag } from '../state/outcome.js';
import { requestSummary, type RequestObserver, type RequestRecord } from './request-record.js';

export interface TapFilter {
  /** Destination service or endpoint pod: "name" (any namespace) or "namespace/name". */
  to?: string;
  /** A pod, service or identity of this namespace at either end. */
  namespace?: string;
  method?: string;
  /** Prefix of the request path. */
  path?: string;
  /** At most this many records a second to this subscriber; the rest are skipped. */
  maxRps: number;
}

/** One line of `nodemesh tap --json` (and of the admin API's /tap stream). */
export interface TapEvent {
  time: string;
  reporter: RequestRecord['reporter'];
  protocol: RequestRecord['protocol'];
  httpVersion: RequestRecord['httpVersion'];
  method: string;
  authority: string;
  path: string;
  /** 0 when no response was sent (client gone, reset). */
  status: number;
  grpcStatus: number | null;
  latencyMs: number;
  responseFlags: ResponseFlag;
  retries: number;
  route: string | null;
  source: { pod: string | null; ip: string; identity: string | null };
  destination: {
    service: string | null;
    port: number | null;
    endpoint: FlowEndpoint | null;
  };
}

/** Query parameters of /tap, named as the CLI flags are. */
export const TAP_FILTER_KEYS = ['to', 'namespace', 'method', 'path', 'max-rps'] as const;
export const DEFAULT_TAP_MAX_RPS = 100;
const MAX_TAP_MAX_RPS = 100_000;
const MAX_SUBSCRIBERS = 16;

export function parseTapFilter(query: URLSearchParams): TapFilter {
  const filter: TapFilter = { maxRps: DEFAULT_TAP_MAX_RPS };
  const value = (key: string) => query.get(key) || undefined;
  const to = value('to');
  const namespace = value('namespace');
  const method = value('method');
  const path = value('path');
  const maxRps = value('max-rps');
  if (to !== undefined) filter.to = to;
  if (namespace !== undefined) filter.namespace = namespace;
  if (method !== undefined) {
    if (!/^[A-Za-z]+$/.test(method)) throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--method must be an HTTP method such as GET, got "${method}"`);
    filter.method = method.toUpperCase();
  }
  if (path !== undefined) {
    if (!path.startsWith('/')) throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--path must be a path prefix starting with "/", got "${path}"`);
    filter.path = path;
  }
  if (maxRps !== undefined) {
    const n = Number(maxRps);
    if (!Number.isFinite(n) || n <= 0 || n > MAX_TAP_MAX_RPS) {
      throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--max-rps must be a number of requests per second in (0, ${MAX_TAP_MAX_RPS}], got "${maxRps}"`);
    }
    filter.maxRps = n;
  }
  return filter;
}

// spiffe://<td>/ns/<namespace>/sa/<sa>
const identityNamespace = (id: string | undefined) => (id ? /\/ns\/([^/]+)\/sa\//.exec(id)?.[1] : undefined);

export function matchTap(r: RequestRecord, f: TapFilter): boolean {
  if (f.method !== undefined && r.method.toUpperCase() !== f.method) return false;
  if (f.path !== undefined && !r.path.startsWith(f.path)) return false;
  const svc = r.destination.service;
  const endpointPod = r.destination.endpoint?.kind === 'pod' ? r.destination.endpoint.pod : undefined;
  if (f.to !== undefined) {
    const to = f.to;
    const names = [svc && `${svc.namespace}/${svc.name}`, endpointPod && podName(endpointPod)];
    if (!names.some((n) => matchesName(n, to))) return false;
  }
  if (f.namespace !== undefined) {
    const namespaces = [r.source.pod?.namespace, identityNamespace(r.source.identity), svc?.namespace, endpointPod?.namespace];
    if (!namespaces.includes(f.namespace)) return false;
  }
  return true;
}

export function tapEvent(r: RequestRecord): TapEvent {
  const svc = r.destination.service;
  const ep = r.destination.endpoint;
  return {
    time: new Date(r.startMs).toISOString(),
    reporter: r.reporter,
    ...requestSummary(r),
    latencyMs: Math.round(r.durationMs * 100) / 100,
    responseFlags: r.responseFlags,
    retries: r.retries,
    route: r.route ?? null,
    source: { pod: r.source.pod ? podName(r.source.pod) : null, ip: r.source.ip, identity: r.source.identity ?? null },
    destination: {
      service: svc ? `${svc.namespace}/${svc.name}` : null,
      port: svc?.port ?? null,
      endpoint: ep ? flowEndpoint(ep) : null,
    },
  };
}

/** Lets through at most `rate` a second, in bursts of at most max(1, rate). */
export class TokenBucket {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #lastMs: number;

  constructor(rate: number, nowMs: number) {
    this.#rate = rate;
    this.#burst = Math.max(1, rate);
    this.#tokens = this.#burst;
    this.#lastMs = nowMs;
  }

  take(nowMs: number): boolean {
    this.#tokens = Math.min(this.#burst, this.#tokens + ((nowMs - this.#lastMs) / 1000) * this.#rate);
    this.#lastMs = nowMs;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

interface Subscriber {
  filter: TapFilter;
  bucket: TokenBucket;
  send: (event: TapEvent) => void;
}

export class TapHub implements RequestObserver {
  readonly #subscribers = new Set<Subscriber>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Starts sending matching records; returns the unsubscribe. */
  subscribe(filter: TapFilter, send: (event: TapEvent) => void): () => void {
    if (this.#subscribers.size >= MAX_SUBSCRIBERS) {
      throw new NodemeshError('NM_ERR_ADMIN_TAP_LIMIT', `${MAX_SUBSCRIBERS} taps are already streaming from this agent; stop one and retry`);
    }
    const s: Subscriber = { filter, bucket: new TokenBucket(filter.maxRps, this.#now()), send };
    this.#subscribers.add(s);
    return () => this.#subscribers.delete(s);
  }

  request(record: RequestRecord): void {
    if (this.#subscribers.size === 0) return;
    let event: TapEvent | undefined;
    const now = this.#now();
    for (const s of this.#subscribers) {
      if (!matchTap(record, s.filter) || !s.bucket.take(now)) continue;
      event ??= tapEvent(record);
      s.send(event);
    }
  }
}
