// The destination reporter's telemetry: an exchange the inbound HTTP filters saw becomes a
// RequestRecord with what this node knows of both ends (the verified source, the local pod
// and the Service it is reported under), as the L7 proxy's records are at the source. Over
// HBONE the source pod is left to the observers, which name it from the verified identity.
import type { HttpExchange } from './http/gate.js';
import type { MeshIndex } from '../state/mesh-index.js';
import type { MeshPod } from '../state/model.js';
import { authorizationOf } from '../state/outcome.js';
import { serviceOfEndpoint } from '../telemetry/peers.js';
import type { RequestRecord } from '../telemetry/request-record.js';

/** One request the destination's filter saw on a connection from `req.source` to `req.target`. */
export function destinationRecord(
  view: MeshIndex,
  req: { source: { principal?: string; ip: string; pod?: MeshPod }; target: { ip: string; port: number } },
  pod: MeshPod,
  ex: HttpExchange,
): RequestRecord {
  const { source, target } = req;
  const service = serviceOfEndpoint(view, target.ip, target.port);
  return {
    reporter: 'destination',
    startMs: ex.startMs,
    durationMs: ex.durationMs,
    protocol: ex.grpc ? 'grpc' : 'http',
    httpVersion: ex.httpVersion,
    method: ex.method,
    authority: ex.authority,
    path: ex.path,
    status: ex.status,
    ...(ex.grpcStatus !== undefined ? { grpcStatus: ex.grpcStatus } : {}),
    responseFlags: ex.flag,
    requestBytes: ex.requestBytes,
    responseBytes: ex.responseBytes,
    retries: 0,
    ...(ex.requestId ? { requestId: ex.requestId } : {}),
    ...(ex.traceparent ? { traceparent: ex.traceparent, ...traceIdOf(ex.traceparent) } : {}),
    source: {
      ...(source.pod ? { pod: source.pod } : {}),
      ip: source.ip,
      ...(source.principal ? { identity: `spiffe://${source.principal}` } : {}),
    },
    destination: {
      ...(service ? { service: { namespace: service.service.namespace, name: service.service.name, port: service.port.port } } : {}),
      endpoint: { kind: 'pod', pod, ip: target.ip, port: target.port, nodeName: pod.nodeName },
    },
    // The same-node path hands the source pod over: the kernel vouched for it, not a certificate.
    security: source.pod ? 'node_local' : source.principal ? 'mutual_tls' : 'none',
    ...(ex.decision ? { authorization: authorizationOf(ex.decision) } : {}),
  };
}

/** W3C trace context: version-traceid-parentid-flags. */
function traceIdOf(traceparent: string): { traceId?: string } {
  const id = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent)?.[1];
  return id ? { traceId: id } : {};
}
