// One proxied HTTP request as telemetry sees it (metrics, access log, tap, top): emitted by
// the L7 proxy when the request is over, whether the upstream or the proxy answered it.
import type { Endpoint } from '../state/mesh-index.js';
import type { MeshPod } from '../state/model.js';
import type { Authorization, ResponseFlag, Security } from '../state/outcome.js';

export interface RequestRecord {
  reporter: 'source' | 'destination';
  /** Wall clock at the request's start, ms since the epoch. */
  startMs: number;
  durationMs: number;
  /** Istio's request_protocol. */
  protocol: 'http' | 'grpc';
  httpVersion: '1.1' | '2';
  method: string;
  authority: string;
  /** Path with query, as the client sent it. */
  path: string;
  /** HTTP status sent to the client; 0 when none was (reset, client gone). */
  status: number;
  grpcStatus?: number;
  responseFlags: ResponseFlag;
  requestBytes: number;
  responseBytes: number;
  /** Attempts after the first. */
  retries: number;
  requestId?: string;
  /** The request's trace, when tracing is on (also for a trace not sampled). */
  traceId?: string;
  /** The traceparent header the upstream received (source) or the proxy received (destination). */
  traceparent?: string;
  /** "HTTPRoute ns/name" when a route decided. */
  route?: string;
  source: { pod?: MeshPod; ip: string; identity?: string };
  /** The Service the client called (or the route's backend), and the endpoint that answered. */
  destination: { service?: { namespace: string; name: string; port: number }; endpoint?: Endpoint };
  security: Security;
  authorization?: Authorization;
}

/** Told of every request as it ends; must not throw or block. */
export interface RequestObserver {
  request(record: RequestRecord): void;
}

/** The request and its answer, as the access log and tap both show them. */
export function requestSummary(r: RequestRecord) {
  return {
    protocol: r.protocol,
    httpVersion: r.httpVersion,
    method: r.method,
    authority: r.authority,
    path: r.path,
    status: r.status,
    grpcStatus: r.grpcStatus ?? null,
  };
}
