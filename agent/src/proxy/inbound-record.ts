// The destination reporter's telemetry: an exchange the inbound HTTP filters saw becomes a
// RequestRecord with what this node knows of both ends (the verified source, the local pod
// and the Service it is reported under), as the L7 proxy's records are at the source.
import type { HttpExchange } from '../http/gate.js';
import type { MeshIndex } from '../state/mesh-index.js';
import type { MeshPod } from '../state/model.js';
import { authorizationOf } from '../telemetry/flow-table.js';
import { serviceOfEndpoint } from '../telemetry/peers.js';
import type { RequestRecord } from '../telemetry/request-record.js';
import type { InboundRequest } from './inbound.js';

export function destinationRecord(view: MeshIndex, req: InboundRequest, pod: MeshPod, ex: HttpExchange): RequestRecord {
  const { source, target } = req;
  const service = serviceOfEndpoint(view, target.ip, target.port);
  const sourcePod = source.pod ?? podOfPrincipal(view, source.ip, source.principal);
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
    source: {
      ...(sourcePod ? { pod: sourcePod } : {}),
      ip: source.ip,
      ...(source.principal ? { identity: `spiffe://${source.principal}` } : {}),
    },
    destination: {
      ...(service ? { service: { namespace: service.service.namespace, name: service.service.name, port: service.port.port } } : {}),
      endpoint: { pod, ip: target.ip, port: target.port, nodeName: pod.nodeName },
    },
    // The same-node path hands the source pod over: the kernel vouched for it, not a certificate.
    security: source.pod ? 'node_local' : source.principal ? 'mutual_tls' : 'none',
    ...(ex.decision ? { authorization: authorizationOf(ex.decision) } : {}),
  };
}

/**
 * The pod at a tunnel's forwarded source address, only when it has the tunnel's verified
 * identity: a peer cannot borrow another pod's name by claiming its address.
 */
function podOfPrincipal(view: MeshIndex, ip: string, principal: string | undefined): MeshPod | undefined {
  const pod = view.podsByIP.get(ip);
  if (!pod || !principal) return undefined;
  return principal.endsWith(`/ns/${pod.namespace}/sa/${pod.serviceAccount}`) ? pod : undefined;
}
