// Opens the upstream side of a proxied connection or request to one endpoint: in-process
// through the inbound checks for a pod on this node, an HBONE tunnel (mTLS with the source
// pod's identity) for a pod on another node, a plaintext connection from this node for an
// external endpoint (no mesh destination: nobody at the other end to authorize). Shared by the
// L4 relay and the L7 pools; the L7 pools name the HTTP version they will speak, which the
// destination needs to see requests.
import type { Duplex } from 'node:stream';
import type { HttpProtocol } from '../http/detect.js';
import type { Endpoint, LocalPod, MeshIndex } from '../state/mesh-index.js';
import { authorizationOf, flagForStatus, type Authorization, type ResponseFlag, type Security } from '../state/outcome.js';
import { PROTOCOL_HEADER, formatProtocol } from '../hbone/protocol.js';
import type { InboundRequest, InboundResult } from '../inbound/inbound.js';
import { socketPair } from '../../../native/socketpair.js';
import { relay } from '../transport/relay.js';
import { tcpConnect } from '../transport/tcp-connect.js';

export interface TunnelRequest {
  sourceIdentity: string;
  node: { name: string; ip: string; port: number };
  target: { ip: string; port: number };
  forwardedFor: string;
  /** Extra CONNECT request headers (the inner protocol of an L7 connection). */
  headers?: Record<string, string>;
}

export interface UpstreamDialDeps {
  /** The HBONE port of the other nodes. */
  hbonePort: number;
  /** How long a connect to an external endpoint may take. */
  connectTimeoutMs: number;
  /** SPIFFE id and Istio principal of a local pod's service account. */
  identityOf(pod: LocalPod['pod']): { spiffe: string; principal: string };
  /** Same-node destinations: the inbound checks, in-process. */
  inbound: { open(req: InboundRequest): Promise<InboundResult> };
  /** Other-node destinations: an HBONE tunnel; a refusal carries the HTTP status. */
  tunnels: { connect(req: TunnelRequest): Promise<Duplex> };
}

/** What the dial learnt, for the flow record of the connection it serves. */
export interface DialReport {
  security: Security;
  authorization?: Authorization;
}

export type DialResult = { stream: Duplex } | { flag: ResponseFlag; reason: string; status?: number };

/** How a connection to this endpoint travels, as the flow record and metrics name it. */
export const securityTo = (endpoint: Endpoint, nodeName: string): Security =>
  endpoint.kind === 'external' ? 'none' : endpoint.nodeName === nodeName ? 'node_local' : 'mutual_tls';

export class UpstreamDialer {
  readonly #deps: UpstreamDialDeps;

  constructor(deps: UpstreamDialDeps) {
    this.#deps = deps;
  }

  identityOf(pod: LocalPod['pod']): { spiffe: string; principal: string } {
    return this.#deps.identityOf(pod);
  }

  /** Never throws: a refusal is an Envoy response flag and a reason. `protocol` is the HTTP
   * version the connection will carry; without it the bytes are opaque. */
  async open(view: MeshIndex, local: LocalPod, endpoint: Endpoint, sourceIP: string, report: DialReport, protocol?: HttpProtocol): Promise<DialResult> {
    const target = { ip: endpoint.ip, port: endpoint.port };
    report.security = securityTo(endpoint, view.nodeName);
    if (endpoint.kind === 'external') return this.#external(target);
    const identity = this.#deps.identityOf(local.pod);
    if (endpoint.nodeName === view.nodeName) {
      const r = await this.#deps.inbound.open({
        source: { principal: identity.principal, namespace: local.pod.namespace, ip: sourceIP, pod: local.pod },
        target,
        ...(protocol ? { protocol } : {}),
        onDenied: (d) => (report.authorization = authorizationOf(d)),
      });
      if (r.decision) report.authorization = authorizationOf(r.decision);
      if ('stream' in r) return { stream: r.stream };
      return { flag: flagForStatus(r.status), reason: r.reason, status: r.status };
    }
    const node = view.state.nodes.get(endpoint.nodeName);
    if (!node) return { flag: 'UH', reason: `endpoint node ${endpoint.nodeName} is not in the configuration` };
    try {
      const stream = await this.#deps.tunnels.connect({
        sourceIdentity: identity.spiffe,
        node: { name: node.name, ip: node.internalIP, port: this.#deps.hbonePort },
        target,
        forwardedFor: sourceIP,
        ...(protocol ? { headers: { [PROTOCOL_HEADER]: formatProtocol(protocol) } } : {}),
      });
      return { stream: protocol === 'h2' ? overKernelSocket(stream) : stream };
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 403) report.authorization = { allowed: false, reason: (err as Error).message };
      return { flag: flagForStatus(status), reason: (err as Error).message, ...(status ? { status } : {}) };
    }
  }

  async #external(target: { ip: string; port: number }): Promise<DialResult> {
    const r = await tcpConnect(target, `external endpoint ${target.ip}:${target.port}`, this.#deps.connectTimeoutMs);
    return 'socket' in r ? { stream: r.socket } : { flag: r.failed === 'timeout' ? 'UT' : 'UF', reason: r.reason };
  }
}

/**
 * The pool's HTTP/2 session runs over a kernel socket whose other end is relayed to the
 * tunnel: over the tunnel stream itself Node would run it through JSStreamSocket (one write in
 * flight, completed on the next turn of the loop), where concurrent streams stall each other.
 */
function overKernelSocket(tunnel: Duplex): Duplex {
  const [near, far] = socketPair();
  void relay(tunnel, far);
  return near;
}
