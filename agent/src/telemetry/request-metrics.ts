// Istio's standard request metrics (istio_requests_total, duration and size histograms) with
// Istio's names, labels, values and buckets, so Istio dashboards and Kiali read nodemesh's L7
// traffic unchanged; plus nodemesh's own retry, overflow and local-reply counters. Each record
// counts for the reporter that emitted it. No addresses, ports or paths as labels.
import { Counter, Histogram, type Registry } from 'prom-client';
import type { MeshIndex } from '../state/mesh-index.js';
import { PEER_LABELS, peerLabels, securityPolicy } from './istio-labels.js';
import { requestPeers } from './peers.js';
import type { RequestObserver, RequestRecord } from './request-record.js';

const LABELS = [...PEER_LABELS, 'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'] as const;

export type RequestLabels = Record<(typeof LABELS)[number], string>;

/** Envoy's default histogram buckets, which Istio keeps for its duration (ms) and size (bytes)
 * histograms alike. */
export const ISTIO_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

export interface RequestMetricsDeps {
  index(): MeshIndex;
  trustDomain: string;
}

export class RequestMetrics implements RequestObserver {
  readonly #deps: RequestMetricsDeps;
  readonly #requests: Counter<keyof RequestLabels>;
  readonly #duration: Histogram<keyof RequestLabels>;
  readonly #requestBytes: Histogram<keyof RequestLabels>;
  readonly #responseBytes: Histogram<keyof RequestLabels>;
  readonly #retries: Counter<'destination_service'>;
  readonly #overflows: Counter<'destination_service'>;
  readonly #localReplies: Counter<'response_flags'>;

  /** Label children by series key, so a request costs map lookups, not label hashing. */
  #cache = new Map<string, Series>();
  #cachedView: MeshIndex | undefined;

  constructor(registry: Registry, deps: RequestMetricsDeps) {
    this.#deps = deps;
    const registers = [registry];
    const histogram = (name: string, help: string) => new Histogram({ name, help, labelNames: LABELS, buckets: ISTIO_BUCKETS, registers });
    this.#requests = new Counter({ name: 'istio_requests_total', help: 'The total number of requests', labelNames: LABELS, registers });
    this.#duration = histogram('istio_request_duration_milliseconds', 'The duration of requests, in milliseconds');
    this.#requestBytes = histogram('istio_request_bytes', 'The HTTP request body sizes, in bytes');
    this.#responseBytes = histogram('istio_response_bytes', 'The HTTP response body sizes, in bytes');
    this.#retries = new Counter({
      name: 'nodemesh_http_retries_total',
      help: 'Request attempts the node proxy retried, by destination service',
      labelNames: ['destination_service'],
      registers,
    });
    this.#overflows = new Counter({
      name: 'nodemesh_http_overflows_total',
      help: 'Requests refused by a DestinationRule circuit breaker (response flag UO), by destination service',
      labelNames: ['destination_service'],
      registers,
    });
    this.#localReplies = new Counter({
      name: 'nodemesh_http_local_replies_total',
      help: 'Requests the node proxy answered or ended itself instead of the upstream, by response flag',
      labelNames: ['response_flags'],
      registers,
    });
  }

  request(record: RequestRecord): void {
    const series = this.#series(record);
    series.requests.inc();
    series.duration.observe(record.durationMs);
    series.requestBytes.observe(record.requestBytes);
    series.responseBytes.observe(record.responseBytes);
    const service = { destination_service: series.destinationService };
    if (record.retries > 0) this.#retries.inc(service, record.retries);
    if (record.responseFlags === 'UO') this.#overflows.inc(service);
    // DC is the client leaving, not an answer of the proxy.
    if (record.responseFlags !== '-' && record.responseFlags !== 'DC') this.#localReplies.inc({ response_flags: record.responseFlags });
  }

  #series(record: RequestRecord): Series {
    const view = this.#deps.index();
    if (view !== this.#cachedView || this.#cache.size >= MAX_CACHED_SERIES) {
      this.#cache = new Map();
      this.#cachedView = view;
    }
    const key = seriesKey(record);
    let series = this.#cache.get(key);
    if (!series) {
      const labels = requestLabels(record, view, this.#deps.trustDomain);
      series = {
        requests: this.#requests.labels(labels),
        duration: this.#duration.labels(labels),
        requestBytes: this.#requestBytes.labels(labels),
        responseBytes: this.#responseBytes.labels(labels),
        destinationService: labels.destination_service,
      };
      this.#cache.set(key, series);
    }
    return series;
  }
}

interface Series {
  requests: { inc(): void };
  duration: { observe(v: number): void };
  requestBytes: { observe(v: number): void };
  responseBytes: { observe(v: number): void };
  destinationService: string;
}

/** Series stay cached for a configuration (labels depend on it), up to this many. */
const MAX_CACHED_SERIES = 10_000;

/** What the labels of a record depend on: its peers and outcome (addresses only as keys). */
function seriesKey(r: RequestRecord): string {
  const src = r.source.pod ? `${r.source.pod.namespace}/${r.source.pod.name}` : '';
  const dst = r.destination.service ? `${r.destination.service.namespace}/${r.destination.service.name}` : '';
  const ep = r.destination.endpoint ? `${r.destination.endpoint.ip}:${r.destination.endpoint.port}` : '';
  return `${r.reporter}|${src}|${r.source.ip}|${r.source.identity ?? ''}|${dst}|${ep}|${r.protocol}|${r.status}|${r.grpcStatus ?? ''}|${r.responseFlags}|${r.security}`;
}

/** Istio's values: response_code 0 when no answer went out, grpc_response_status empty for
 * plain HTTP (and for a gRPC call that got no status). */
export function requestLabels(record: RequestRecord, view: MeshIndex, trustDomain: string): RequestLabels {
  return {
    ...peerLabels(record.reporter, requestPeers(record, view, trustDomain)),
    request_protocol: record.protocol,
    response_code: String(record.status),
    grpc_response_status: record.grpcStatus === undefined ? '' : String(record.grpcStatus),
    response_flags: record.responseFlags,
    connection_security_policy: securityPolicy(record.security),
  };
}

