// The HBONE server's side of the inbound path: a tunnel's verified peer identity becomes the
// source principal for the inbound checks, its `x-nodemesh-protocol` header the inner protocol,
// and each tunnel is a row in the node's flow table.
import { parseSpiffeId, principalOf } from '../identity/spiffe.js';
import { podName } from '../state/mesh-index.js';
import { type FlowTable, type ProxyFlow } from '../telemetry/flow-table.js';
import { authorizationOf, flagForStatus } from '../state/outcome.js';
import { PROTOCOL_HEADER, parseProtocol } from '../hbone/protocol.js';
import type { HboneOpenResult, HboneTunnelRequest } from '../hbone/server.js';
import type { Inbound } from './inbound.js';

export function inboundTunnel(inbound: Inbound, flows: FlowTable): (t: HboneTunnelRequest) => Promise<HboneOpenResult> {
  return async (t) => {
    const peer = parseSpiffeId(t.peer);
    const sourceIP = t.forwardedFor ?? t.peerAddress;
    let flow: ProxyFlow | undefined;
    const protocol = parseProtocol(t.headers[PROTOCOL_HEADER]);
    const r = await inbound.open({
      source: { principal: principalOf(peer), namespace: peer.namespace, ip: sourceIP },
      target: t.target,
      ...(protocol ? { protocol } : {}),
      // Per-request denials (HTTP policies): the row shows the most recent one.
      onDenied: (d) => {
        if (flow) flow.authorization = authorizationOf(d);
      },
    });
    flow = flows.open({
      direction: 'inbound',
      sourceIP,
      sourcePort: 0,
      sourceIdentity: t.peer,
      dstIP: t.target.ip,
      dstPort: t.target.port,
      ...(r.pod ? { dstPod: podName(r.pod) } : {}),
      startMs: Date.now(),
      bytesSent: 0,
      bytesReceived: 0,
      responseFlags: 'stream' in r ? '-' : flagForStatus(r.status),
      security: 'mutual_tls',
      ...(r.decision ? { authorization: authorizationOf(r.decision) } : {}),
    });
    if (!('stream' in r)) {
      flows.close(flow);
      return { status: r.status, reason: r.reason };
    }
    const { stream, podSocket } = r;
    // Long connections show progress in metrics before they close.
    flow.live = () => ({ sent: podSocket.bytesWritten, received: podSocket.bytesRead });
    stream.once('close', () => {
      flow.bytesSent = podSocket.bytesWritten;
      flow.bytesReceived = podSocket.bytesRead;
      flows.close(flow);
    });
    return { stream };
  };
}
