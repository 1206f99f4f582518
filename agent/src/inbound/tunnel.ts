// The HBONE server's side of the inbound path: a tunnel's verified peer identity becomes the
// source principal for the inbound checks, its `x-nodemesh-protocol` header the inner protocol,
// and each tunnel is a row in the node's flow table.
import { parseSpiffeId, principalOf } from '../identity/spiffe.js';
import type { FlowTable } from '../telemetry/flow-table.js';
import { PROTOCOL_HEADER, parseProtocol } from '../hbone/protocol.js';
import type { HboneOpenResult, HboneTunnelRequest } from '../hbone/server.js';
import { openWithFlow } from './front-door.js';
import type { Inbound } from './inbound.js';

export function inboundTunnel(inbound: Inbound, flows: FlowTable): (t: HboneTunnelRequest) => Promise<HboneOpenResult> {
  return async (t) => {
    const peer = parseSpiffeId(t.peer);
    const sourceIP = t.forwardedFor ?? t.peerAddress;
    const protocol = parseProtocol(t.headers[PROTOCOL_HEADER]);
    const { result, finish } = await openWithFlow(
      inbound,
      flows,
      { source: { principal: principalOf(peer), namespace: peer.namespace, ip: sourceIP }, target: t.target, ...(protocol ? { protocol } : {}) },
      { sourceIP, sourcePort: 0, sourceIdentity: t.peer, security: 'mutual_tls' },
    );
    if (!('stream' in result)) return { status: result.status, reason: result.reason };
    result.stream.once('close', finish);
    return { stream: result.stream };
  };
}
