// Outbound listener (:15001): accepts connections the connect4 program redirected, finds the
// original destination and source pod the kernel recorded, picks an endpoint per connection
// and opens the upstream: in-process through the inbound checks for a pod on this node, an
// HBONE tunnel (mTLS with the source pod's identity) for a pod on another node. Unknown or
// unservable connections are reset at once, never left hanging.
import { addressOf, listen } from '../listen.js';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RoundRobin } from '../balance/round-robin.js';
import { podName, type Destination, type Endpoint, type LocalPod, type MeshIndex } from '../state/mesh-index.js';
import { authorizationOf, flagForStatus, type FlowTable, type ProxyFlow } from '../telemetry/flow-table.js';
import type { InboundRequest, InboundResult } from './inbound.js';
import { relay, reset } from './relay.js';

export interface Origin {
  dstIP: string;
  dstPort: number;
  cgroupId: bigint;
  cookie: bigint;
}

export interface TunnelRequest {
  sourceIdentity: string;
  node: { name: string; ip: string; port: number };
  target: { ip: string; port: number };
  forwardedFor: string;
}

export interface OutboundConfig {
  /** Give up on an upstream that has not answered within this time. */
  connectTimeoutMs: number;
  /** The HBONE port of the other nodes. */
  hbonePort: number;
}

export interface OutboundDeps {
  /** The original destination of a redirected connection, by its source address. */
  lookupOrigin(ip: string, port: number): Origin | null;
  index(): MeshIndex;
  /** SPIFFE id and Istio principal of a local pod's service account. */
  identityOf(pod: LocalPod['pod']): { spiffe: string; principal: string };
  /** Same-node destinations: the inbound checks, in-process. */
  inbound: { open(req: InboundRequest): Promise<InboundResult> };
  /** Other-node destinations: an HBONE tunnel; a refusal carries the HTTP status. */
  tunnels: { connect(req: TunnelRequest): Promise<Duplex> };
  balancer: RoundRobin;
  flows: FlowTable;
  log: Logger;
}

type Upstream = { stream: Duplex } | { flag: ProxyFlow['responseFlags']; reason: string };

export class OutboundProxy {
  readonly #config: OutboundConfig;
  readonly #deps: OutboundDeps;
  readonly #server: net.Server;
  readonly #open = new Set<Duplex>();

  constructor(config: OutboundConfig, deps: OutboundDeps) {
    this.#config = config;
    this.#deps = deps;
    this.#server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => void this.#accept(socket));
  }

  listen(host: string, port: number): Promise<void> {
    return listen(this.#server, 'outbound listener', 'NM_ERR_PROXY_LISTEN', host, port);
  }


  get address(): string {
    return addressOf(this.#server);
  }

  /** Stops accepting; open connections get until the deadline to finish, then are reset. */
  async close(drainMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    const timer = setTimeout(() => {
      for (const s of this.#open) reset(s);
    }, drainMs);
    await closed;
    clearTimeout(timer);
  }

  async #accept(socket: net.Socket): Promise<void> {
    this.#track(socket);
    const { lookupOrigin, index, log } = this.#deps;
    const sourceIP = socket.remoteAddress ?? '';
    const sourcePort = socket.remotePort ?? 0;
    const origin = lookupOrigin(sourceIP, sourcePort);
    if (!origin) {
      // Not a connection our connect4 program redirected (someone dialled :15001 directly).
      log.warn({ source: `${sourceIP}:${sourcePort}` }, 'outbound: no original destination recorded; connection reset');
      socket.resetAndDestroy();
      return;
    }
    const view = index();
    const local = view.localPods.get(origin.cgroupId);
    const dest = view.destination(origin.dstIP, origin.dstPort);
    const flow = this.#deps.flows.open({
      direction: 'outbound',
      cookie: origin.cookie,
      sourceIP,
      sourcePort,
      ...(local ? { sourcePod: podName(local.pod) } : {}),
      dstIP: origin.dstIP,
      dstPort: origin.dstPort,
      ...describe(dest),
      startMs: Date.now(),
      bytesSent: 0,
      bytesReceived: 0,
      responseFlags: '-',
      security: 'none',
    });
    const endpoint = dest && this.#deps.balancer.pick(`${origin.dstIP}:${origin.dstPort}`, dest.endpoints);
    if (!endpoint || !local) {
      flow.responseFlags = !dest ? 'NR' : 'UH';
      const reason = !endpoint ? 'no endpoint for destination' : 'the source pod is no longer known to this node';
      this.#refuse(socket, flow, reason);
      return;
    }
    flow.endpoint = { ip: endpoint.ip, port: endpoint.port, pod: podName(endpoint.pod), node: endpoint.nodeName };

    // The pod may give up while the upstream is being opened: count it as DC.
    let gone = false;
    const onGone = () => (gone = true);
    socket.once('close', onGone);
    socket.on('error', onGone);
    const upstream = await this.#openUpstream(view, local, endpoint, flow, `${sourceIP}`);
    socket.off('close', onGone);
    socket.off('error', onGone);

    if ('flag' in upstream) {
      flow.responseFlags = upstream.flag;
      this.#refuse(socket, flow, upstream.reason);
      return;
    }
    if (gone) {
      upstream.stream.destroy();
      flow.responseFlags = 'DC';
      this.#deps.flows.close(flow);
      return;
    }
    this.#track(upstream.stream);
    socket.setNoDelay(true);
    flow.live = () => ({ sent: socket.bytesRead, received: socket.bytesWritten });
    const result = await relay(socket, upstream.stream);
    flow.bytesSent = result.bytesFromDownstream;
    flow.bytesReceived = result.bytesFromUpstream;
    this.#deps.flows.close(flow);
  }

  async #openUpstream(view: MeshIndex, local: LocalPod, endpoint: Endpoint, flow: ProxyFlow, sourceIP: string): Promise<Upstream> {
    const identity = this.#deps.identityOf(local.pod);
    const target = { ip: endpoint.ip, port: endpoint.port };
    if (endpoint.nodeName === view.nodeName) {
      flow.security = 'node_local';
      const r = await this.#deps.inbound.open({
        source: { principal: identity.principal, namespace: local.pod.namespace, ip: sourceIP },
        target,
        onDenied: (d) => (flow.authorization = authorizationOf(d)),
      });
      if (r.decision) flow.authorization = authorizationOf(r.decision);
      if ('stream' in r) return { stream: r.stream };
      return { flag: flagForStatus(r.status), reason: r.reason };
    }
    const node = view.state.nodes.get(endpoint.nodeName);
    if (!node) return { flag: 'UH', reason: `endpoint node ${endpoint.nodeName} is not in the configuration` };
    flow.security = 'mutual_tls';
    try {
      const stream = await this.#deps.tunnels.connect({
        sourceIdentity: identity.spiffe,
        node: { name: node.name, ip: node.internalIP, port: this.#config.hbonePort },
        target,
        forwardedFor: sourceIP,
      });
      return { stream };
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 403) flow.authorization = { allowed: false, reason: (err as Error).message };
      return { flag: flagForStatus(status), reason: (err as Error).message };
    }
  }

  #refuse(socket: net.Socket, flow: ProxyFlow, reason: string): void {
    this.#deps.log.info({ flow: logFields(flow), reason }, 'outbound: connection reset');
    socket.resetAndDestroy();
    this.#deps.flows.close(flow);
  }

  #track(stream: Duplex): void {
    this.#open.add(stream);
    stream.once('close', () => this.#open.delete(stream));
  }
}

function describe(dest: Destination | undefined): Pick<ProxyFlow, 'service' | 'dstPod'> {
  if (!dest) return {};
  if (dest.kind === 'service') return { service: `${dest.service.namespace}/${dest.service.name}` };
  return { dstPod: podName(dest.pod) };
}

function logFields(flow: ProxyFlow) {
  return {
    source: `${flow.sourceIP}:${flow.sourcePort}`,
    sourcePod: flow.sourcePod,
    destination: `${flow.dstIP}:${flow.dstPort}`,
    service: flow.service,
    endpoint: flow.endpoint && `${flow.endpoint.ip}:${flow.endpoint.port}`,
    responseFlags: flow.responseFlags,
    authorization: flow.authorization?.reason,
  };
}
