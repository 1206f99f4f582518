// What a proxy span says about its request, the same at both ends: the name Istio's proxies
// give it (`<service fqdn>:<port>/*`, so source and destination spans line up in a trace
// view), OpenTelemetry's HTTP (and gRPC) attributes, nodemesh's own, and the error status.
import { type Attributes, SpanKind, SpanStatusCode, type SpanStatus } from '@opentelemetry/api';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_NAME,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions';
import { CLUSTER_DOMAIN } from './peers.js';
import type { RequestRecord } from './request-record.js';

// Still "development" in the semantic conventions, so not in the package's stable entry point;
// its guidance is to copy such names rather than import the incubating one.
const ATTR_RPC_SYSTEM = 'rpc.system';
const ATTR_RPC_GRPC_STATUS_CODE = 'rpc.grpc.status_code';
const ATTR_HTTP_REQUEST_BODY_SIZE = 'http.request.body.size';
const ATTR_HTTP_RESPONSE_BODY_SIZE = 'http.response.body.size';

/** gRPC codes a server reports as its own failure (semantic conventions for gRPC servers). */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

type Target = { namespace: string; name: string; port: number } | undefined;

/** Istio's default operation name: the destination host and port, any path. */
export function spanName(service: Target, method: string): string {
  return service ? `${service.name}.${service.namespace}.svc.${CLUSTER_DOMAIN}:${service.port}/*` : method;
}

export function spanAttributes(record: RequestRecord, kind: SpanKind): Attributes {
  const query = record.path.indexOf('?');
  const authority = splitAuthority(record.authority);
  const attributes: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: record.method,
    [ATTR_URL_SCHEME]: 'http',
    [ATTR_URL_PATH]: query < 0 ? record.path : record.path.slice(0, query),
    [ATTR_SERVER_ADDRESS]: authority.host,
    [ATTR_NETWORK_PROTOCOL_NAME]: 'http',
    [ATTR_NETWORK_PROTOCOL_VERSION]: record.httpVersion,
    [ATTR_HTTP_REQUEST_BODY_SIZE]: record.requestBytes,
    [ATTR_HTTP_RESPONSE_BODY_SIZE]: record.responseBytes,
    'nodemesh.response_flags': record.responseFlags,
  };
  if (query >= 0) attributes[ATTR_URL_QUERY] = record.path.slice(query + 1);
  const port = authority.port ?? record.destination.service?.port;
  if (port !== undefined) attributes[ATTR_SERVER_PORT] = port;
  if (record.status > 0) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = record.status;
  if (record.protocol === 'grpc') {
    attributes[ATTR_RPC_SYSTEM] = 'grpc';
    if (record.grpcStatus !== undefined) attributes[ATTR_RPC_GRPC_STATUS_CODE] = record.grpcStatus;
  }
  if (record.route) attributes['nodemesh.route'] = record.route;
  if (record.retries > 0) attributes['nodemesh.retries'] = record.retries;
  if (record.requestId) attributes['nodemesh.request_id'] = record.requestId;
  // The peer is the other end of this proxy's hop: the endpoint it sent to, or the client.
  const endpoint = record.destination.endpoint;
  if (kind === SpanKind.CLIENT && endpoint) {
    attributes[ATTR_NETWORK_PEER_ADDRESS] = endpoint.ip;
    attributes[ATTR_NETWORK_PEER_PORT] = endpoint.port;
  }
  if (kind === SpanKind.SERVER) {
    attributes[ATTR_CLIENT_ADDRESS] = record.source.ip;
    attributes[ATTR_NETWORK_PEER_ADDRESS] = record.source.ip;
  }
  const error = errorType(record, kind);
  if (error) attributes[ATTR_ERROR_TYPE] = error;
  return attributes;
}

/** ERROR for what the conventions call a failure: no answer, 5xx, 4xx seen by a client. */
export function spanStatus(record: RequestRecord, kind: SpanKind): SpanStatus {
  return errorType(record, kind) ? { code: SpanStatusCode.ERROR } : { code: SpanStatusCode.UNSET };
}

function errorType(record: RequestRecord, kind: SpanKind): string | undefined {
  if (record.status === 0) return record.responseFlags === '-' ? 'no_response' : record.responseFlags;
  if (record.protocol === 'grpc' && record.grpcStatus !== undefined && record.grpcStatus !== 0) {
    if (kind === SpanKind.CLIENT || GRPC_SERVER_ERRORS.has(record.grpcStatus)) return String(record.grpcStatus);
  }
  if (record.status >= 500 || (kind === SpanKind.CLIENT && record.status >= 400)) return String(record.status);
  return undefined;
}

function splitAuthority(authority: string): { host: string; port?: number } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority };
  return m[2] ? { host: m[1] as string, port: Number(m[2]) } : { host: m[1] as string };
}
