// Outbound listener (:15001): accepts connections the connect4 program redirected, finds the
// original destination and source pod the kernel recorded, picks an endpoint per connection
// and relays bytes. Unknown or unservable connections are reset at once, never left hanging.
import net from 'node:net';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { RoundRobin } from '../balance/round-robin.js';
import { podName, type Destination, type Endpoint, type MeshIndex } from '../state/mesh-index.js';
import type { FlowTable, ProxyFlow } from '../telemetry/flow-table.js';
import { relay } from './relay.js';

export interface Origin {
  dstIP: string;
  dstPort: number;
  cgroupId: bigint;
  cookie: bigint;
}

export interface OutboundConfig {
  /** Give up on an upstream that has not accepted within this time. */
  connectTimeoutMs: number;
}

export interface OutboundDeps {
  /** The original destination of a redirected connection, by its source address. */
  lookupOrigin(ip: string, port: number): Origin | null;
  index(): MeshIndex;
  balancer: RoundRobin;
  flows: FlowTable;
  log: Logger;
}

export class OutboundProxy {
  readonly #config: OutboundConfig;
  readonly #deps: OutboundDeps;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  constructor(config: OutboundConfig, deps: OutboundDeps) {
    this.#config = config;
    this.#deps = deps;
    this.#server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.#accept(socket));
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) =>
        reject(
          new NodemeshError(
            'NM_ERR_PROXY_LISTEN',
            `outbound listener cannot listen on ${host}:${port}: ${err.code ?? err.message}` +
              (err.code === 'EADDRNOTAVAIL' ? ' (is the Node InternalIP an address of this host?)' : '') +
              (err.code === 'EADDRINUSE' ? ' (is another agent running on this node?)' : ''),
            { cause: err },
          ),
        );
      this.#server.once('error', onError);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
  }

  get address(): string {
    const a = this.#server.address();
    return a && typeof a === 'object' ? `${a.address}:${a.port}` : '';
  }

  /** Stops accepting; open connections get until the deadline to finish, then are reset. */
  async close(drainMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#sockets.size > 0) {
      const timer = setTimeout(() => {
        for (const s of this.#sockets) s.resetAndDestroy();
      }, drainMs);
      await closed;
      clearTimeout(timer);
    } else {
      await closed;
    }
  }

  #accept(socket: net.Socket): void {
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
    });
    const endpoint = dest && this.#deps.balancer.pick(`${origin.dstIP}:${origin.dstPort}`, dest.endpoints);
    if (!endpoint) {
      flow.responseFlags = dest ? 'UH' : 'NR';
      log.info({ flow: logFields(flow) }, 'outbound: no endpoint for destination; connection reset');
      socket.resetAndDestroy();
      this.#deps.flows.close(flow);
      return;
    }
    flow.endpoint = { ip: endpoint.ip, port: endpoint.port, pod: podName(endpoint.pod), node: endpoint.nodeName };
    this.#connect(socket, endpoint, flow);
  }

  #connect(socket: net.Socket, endpoint: Endpoint, flow: ProxyFlow): void {
    const upstream = net.connect({ host: endpoint.ip, port: endpoint.port, allowHalfOpen: true, noDelay: true });
    this.#track(upstream);
    upstream.setTimeout(this.#config.connectTimeoutMs);
    // The pod may give up before the upstream answers: drop the attempt, count it as DC.
    const abandon = () => {
      upstream.destroy();
      flow.responseFlags = 'DC';
      this.#deps.flows.close(flow);
    };
    const ignore = () => {};
    socket.once('close', abandon);
    socket.on('error', ignore);
    const settle = () => {
      socket.off('close', abandon);
      socket.off('error', ignore);
      upstream.off('error', onError);
      upstream.off('timeout', onTimeout);
      upstream.setTimeout(0);
    };
    const fail = (flag: 'UF' | 'UT', reason: string) => {
      settle();
      flow.responseFlags = flag;
      this.#deps.log.info({ flow: logFields(flow), reason }, 'outbound: upstream connect failed; connection reset');
      upstream.destroy();
      socket.resetAndDestroy();
      this.#deps.flows.close(flow);
    };
    const onError = (err: NodeJS.ErrnoException) => fail('UF', err.code ?? err.message);
    const onTimeout = () => fail('UT', `no answer within ${this.#config.connectTimeoutMs} ms`);
    upstream.once('error', onError);
    upstream.once('timeout', onTimeout);
    upstream.once('connect', () => {
      settle();
      socket.setNoDelay(true);
      void relay(socket, upstream).then((result) => {
        flow.bytesSent = result.bytesFromDownstream;
        flow.bytesReceived = result.bytesFromUpstream;
        this.#deps.flows.close(flow);
      });
    });
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
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
  };
}
