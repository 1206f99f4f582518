// Inbound plaintext (:15006, PeerAuthentication PERMISSIVE): a connection to a local pod that
// did not come through the mesh is handed by the kernel (sk_lookup) to the proxy's listener in
// that pod's netns, with its original addresses: local = the pod IP:port the client dialled,
// remote = the client. It goes through the same inbound checks as an HBONE one, only without a
// principal (AuthorizationPolicy can match it by ipBlocks, or deny it), HTTP is detected so its
// requests are authorized and reported, and it is a flow with security "none".
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { declaredProtocol } from '../http/detect.js';
import { podName, type MeshIndex } from '../state/mesh-index.js';
import type { FlowTable } from '../telemetry/flow-table.js';
import { serviceOfEndpoint } from '../telemetry/peers.js';
import { openWithFlow } from './front-door.js';
import type { Inbound } from './inbound.js';
import { reset } from '../transport/reset.js';
import { relay } from '../transport/relay.js';

/** Istio's inbound plaintext port; the listener binds it on the pod netns' loopback. */
export const INBOUND_PLAINTEXT_PORT = 15006;
export const INBOUND_PLAINTEXT_HOST = '127.0.0.1';

export interface PlaintextPod {
  /** "namespace/name". */
  name: string;
  podIP: string;
  cgroupPath: string;
}

/** The kernel side (redirect/PlaintextSteering), as this listener needs it. */
export interface PlaintextSteeringPort {
  /** Opens a listening socket in the pod's netns and steers the pod's plaintext to it; the fd
   * is then ours. Null when the pod's netns cannot be found yet (no process in its cgroup). */
  attach(pod: PlaintextPod): number | null;
  detach(podIP: string): void;
}

export interface PlaintextInboundDeps {
  steering: PlaintextSteeringPort;
  inbound: Pick<Inbound, 'open'>;
  flows: FlowTable;
  index(): MeshIndex;
  /** How long a client's first bytes are awaited to detect HTTP (then opaque TCP). */
  detectTimeoutMs: number;
  log: Logger;
  /** How often pods still without a listener are tried again (default 2 s). */
  retryMs?: number;
}

interface PodListener {
  pod: PlaintextPod;
  server?: net.Server;
  /** The last reason it could not be opened, logged once per change. */
  failure?: string;
}

export class PlaintextInbound {
  readonly #deps: PlaintextInboundDeps;
  readonly #pods = new Map<string, PodListener>();
  readonly #open = new Set<Duplex>();
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(deps: PlaintextInboundDeps) {
    this.#deps = deps;
  }

  /** Pods with a listener open now. */
  get listeners(): number {
    let n = 0;
    for (const p of this.#pods.values()) if (p.server) n++;
    return n;
  }

  /**
   * Converges the listeners to `pods` (those with a PERMISSIVE port). A pod that leaves, or
   * whose address or cgroup changed, loses its listener; connections it accepted run on.
   */
  update(pods: readonly PlaintextPod[]): void {
    if (this.#closed) return;
    const want = new Map(pods.map((p) => [p.podIP, p]));
    for (const [ip, have] of this.#pods) {
      const next = want.get(ip);
      if (!next || next.cgroupPath !== have.pod.cgroupPath) this.#stop(ip);
    }
    for (const pod of want.values()) if (!this.#pods.has(pod.podIP)) this.#pods.set(pod.podIP, { pod });
    this.#openPending();
  }

  /** Stops accepting; open connections get until the deadline to finish, then are reset. */
  async close(drainMs: number): Promise<void> {
    this.#closed = true;
    clearInterval(this.#retry);
    const closing = [...this.#pods.keys()].map((ip) => this.#stop(ip));
    const timer = setTimeout(() => {
      for (const s of this.#open) reset(s);
    }, drainMs);
    // server.close() calls back once every connection it accepted has closed.
    await Promise.all(closing);
    clearTimeout(timer);
  }

  #openPending(): void {
    let pending = 0;
    for (const p of this.#pods.values()) {
      if (p.server) continue;
      this.#listen(p);
      if (!p.server) pending++;
    }
    if (pending > 0 && !this.#retry) {
      this.#retry = setInterval(() => this.#openPending(), this.#deps.retryMs ?? 2000);
      this.#retry.unref();
    } else if (pending === 0 && this.#retry) {
      clearInterval(this.#retry);
      this.#retry = undefined;
    }
  }

  #listen(p: PodListener): void {
    const { steering, log } = this.#deps;
    let fd: number | null;
    try {
      fd = steering.attach(p.pod);
    } catch (err) {
      this.#failed(p, (err as Error).message);
      return;
    }
    if (fd === null) {
      this.#failed(p, 'no process runs in the pod cgroup yet, so its network namespace is unknown');
      return;
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => void this.#serve(socket));
    server.on('error', (err) => log.warn({ pod: p.pod.name, err: err.message }, 'inbound plaintext: listener error'));
    try {
      server.listen({ fd });
    } catch (err) {
      steering.detach(p.pod.podIP);
      server.close();
      this.#failed(p, (err as Error).message);
      return;
    }
    p.server = server;
    delete p.failure;
    log.info({ pod: p.pod.name, podIP: p.pod.podIP, listener: `${INBOUND_PLAINTEXT_HOST}:${INBOUND_PLAINTEXT_PORT} in the pod netns` }, 'inbound plaintext: listening for the pod');
  }

  #failed(p: PodListener, reason: string): void {
    if (p.failure === reason) return;
    p.failure = reason;
    this.#deps.log.info(
      { pod: p.pod.name, podIP: p.pod.podIP, reason },
      'inbound plaintext: no listener for the pod yet (retrying); its plaintext reaches it directly, or not at all if a policy applies',
    );
  }

  #stop(ip: string): Promise<void> {
    const p = this.#pods.get(ip);
    this.#pods.delete(ip);
    if (!p?.server) return Promise.resolve();
    this.#deps.steering.detach(ip);
    const server = p.server;
    return new Promise((resolve) => server.close(() => resolve()));
  }

  async #serve(socket: net.Socket): Promise<void> {
    this.#track(socket);
    // Until the relay owns it: a client reset must not be an unhandled error.
    socket.on('error', () => {});
    const { inbound, flows, index, log } = this.#deps;
    const sourceIP = v4(socket.remoteAddress);
    const sourcePort = socket.remotePort ?? 0;
    const target = { ip: v4(socket.localAddress), port: socket.localPort ?? 0 };
    const view = index();
    const declared = declaredProtocol(serviceOfEndpoint(view, target.ip, target.port)?.port.appProtocol);
    // By address only: a plaintext peer proves no identity.
    const client = view.podsByIP.get(sourceIP);
    const { result, flow, finish } = await openWithFlow(
      inbound,
      flows,
      {
        source: { ip: sourceIP },
        target,
        ...(declared === 'h1' || declared === 'h2' ? { protocol: declared } : declared === 'tcp' ? {} : { detectTimeoutMs: this.#deps.detectTimeoutMs }),
      },
      { sourceIP, sourcePort, ...(client ? { sourcePod: podName(client) } : {}), security: 'none' },
    );
    if (!('stream' in result)) {
      log.info({ source: `${sourceIP}:${sourcePort}`, target, status: result.status, reason: result.reason }, 'inbound plaintext: connection refused');
      socket.resetAndDestroy();
      return;
    }
    const { stream } = result;
    this.#track(stream);
    if (socket.destroyed) {
      reset(stream);
      flow.responseFlags = 'DC';
      finish();
      return;
    }
    socket.setNoDelay(true);
    await relay(socket, stream);
    finish();
  }

  #track(stream: Duplex): void {
    this.#open.add(stream);
    stream.once('close', () => this.#open.delete(stream));
  }
}

/** The listener is IPv4 (sk_lookup steers IPv4 only); Node may still print a mapped form. */
function v4(address: string | undefined): string {
  const a = address ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
