// Outbound listener (:15001): accepts connections the connect4 program redirected, finds the
// original destination and source pod the kernel recorded, picks an endpoint per connection
// through the destination's cluster (shared with the L7 proxy)
// and opens the upstream: in-process through the inbound checks for a pod on this node, an
// HBONE tunnel (mTLS with the source pod's identity) for a pod on another node. Unknown or
// unservable connections are reset at once, never left hanging.
import { addressOf, listen } from '../transport/listen.js';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RequestResult } from '../balance/outlier-detector.js';
import { connectionTo, type Clusters } from './cluster.js';
import { podName, type Destination, type Endpoint, type LocalPod, type MeshIndex, type ServiceDestination } from '../state/mesh-index.js';
import { flowEndpoint, type FlowTable, type ProxyFlow } from '../telemetry/flow-table.js';
import type { ResponseFlag } from '../state/outcome.js';
import { declaredProtocol, sniff } from '../http/detect.js';
import { reset } from '../transport/reset.js';
import { relay } from '../transport/relay.js';
import type { UpstreamDialer } from './upstream-dial.js';

export interface Origin {
  dstIP: string;
  dstPort: number;
  cgroupId: bigint;
  cookie: bigint;
}

export interface OutboundConfig {
  /** A client silent this long after connecting (a server-speaks-first protocol) is relayed as
   * opaque TCP. */
  detectTimeoutMs: number;
}

/** A connection to a Service that speaks HTTP, handed to the L7 proxy with what was read. */
export interface L7Connection {
  socket: net.Socket;
  protocol: 'h1' | 'h2';
  head: Buffer;
  local: LocalPod;
  service: ServiceDestination;
  flow: ProxyFlow;
}

export interface OutboundDeps {
  /** The original destination of a redirected connection, by its source address. */
  lookupOrigin(ip: string, port: number): Origin | null;
  index(): MeshIndex;
  dialer: UpstreamDialer;
  /** Serves the connection until it closes. */
  l7: { serve(conn: L7Connection): Promise<void> };
  /** Shared with the L7 proxy: one balancer and outlier detection per destination. */
  clusters: Clusters;
  flows: FlowTable;
  log: Logger;
}

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
    if (!dest || !local || dest.endpoints.length === 0) {
      flow.responseFlags = !dest ? 'NR' : 'UH';
      this.#refuse(socket, flow, !local ? 'the source pod is no longer known to this node' : 'no endpoint for destination');
      return;
    }
    const protocol = await this.#detect(socket, dest);
    if (socket.destroyed) {
      flow.responseFlags = 'DC';
      this.#deps.flows.close(flow);
      return;
    }
    if (protocol.name !== 'tcp' && dest.kind === 'service') {
      flow.live = () => ({ sent: socket.bytesRead, received: socket.bytesWritten });
      await this.#deps.l7.serve({ socket, protocol: protocol.name, head: protocol.head, local, service: dest, flow });
      flow.bytesSent = socket.bytesRead;
      flow.bytesReceived = socket.bytesWritten;
      this.#deps.flows.close(flow);
      return;
    }
    // A Service's connections are balanced as its requests are: DestinationRule load
    // balancer, outlier ejection, the endpoints as configured now.
    const cluster = dest.kind === 'service' ? this.#deps.clusters.get(view, local.pod.namespace, dest) : undefined;
    const endpoint = (cluster ? cluster.endpoints.pick({ ...cluster.hashKey({}, sourceIP) }) : dest.endpoints[0]) as Endpoint;
    flow.endpoint = flowEndpoint(endpoint);

    // The pod may give up while the upstream is being opened: count it as DC.
    let gone = false;
    const onGone = () => (gone = true);
    socket.once('close', onGone);
    socket.on('error', onGone);
    const dial = () => this.#deps.dialer.open(view, local, endpoint, sourceIP, flow);
    const { result: upstream, done } = cluster ? await connectionTo(cluster, endpoint, dial, (r) => ('flag' in r ? refusalResult(r.flag) : undefined)) : { result: await dial(), done: () => {} };
    socket.off('close', onGone);
    socket.off('error', onGone);

    if ('flag' in upstream) {
      flow.responseFlags = upstream.flag;
      this.#refuse(socket, flow, upstream.reason);
      return;
    }
    if (gone) {
      upstream.stream.destroy();
      done();
      flow.responseFlags = 'DC';
      this.#deps.flows.close(flow);
      return;
    }
    this.#track(upstream.stream);
    socket.setNoDelay(true);
    // What detection read goes first; the client may even have ended already.
    if (protocol.head.length > 0) upstream.stream.write(protocol.head);
    flow.live = () => ({ sent: socket.bytesRead, received: socket.bytesWritten });
    const result = await relay(socket, upstream.stream);
    done();
    flow.bytesSent = result.bytesFromDownstream + protocol.head.length;
    flow.bytesReceived = result.bytesFromUpstream;
    this.#deps.flows.close(flow);
  }

  /** The Service port's appProtocol decides; else the first bytes, within the detect timeout. */
  async #detect(socket: net.Socket, dest: Destination): Promise<{ name: 'h1' | 'h2' | 'tcp'; head: Buffer }> {
    const declared = dest.kind === 'service' ? declaredProtocol(dest.port.appProtocol) : undefined;
    if (declared) return { name: declared, head: Buffer.alloc(0) };
    // Accepted paused (pauseOnConnect): nothing is read until someone asks.
    socket.resume();
    const { protocol, head } = await sniff(socket, this.#config.detectTimeoutMs);
    return { name: protocol === 'other' ? 'tcp' : protocol, head };
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

/** A dial that opened nothing, as outlier detection counts it: a policy refusal is not the endpoint failing. */
function refusalResult(flag: ResponseFlag): RequestResult {
  if (flag === 'UT') return { failure: 'timeout' };
  if (flag === '-') return { status: 403 };
  return { failure: 'connect' };
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
