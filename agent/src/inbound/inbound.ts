// Inbound (destination node): a connection for a local pod arrives, from an HBONE tunnel
// (mTLS, the peer's SPIFFE identity known), in-process from this node's outbound path, or as
// plaintext steered to the pod's :15006 listener (PERMISSIVE, no identity).
// Peer authentication and authorization are decided here, at the destination, before any
// byte reaches the pod; then the pod is dialled from the node's InternalIP, the one source
// the kernel's STRICT check lets through. A connection the source declared HTTP, or one to a
// port whose policy needs HTTP fields, goes through the L7 filters (l7.ts), which
// decide each request and report it as a RequestRecord (reporter 'destination').
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { HttpProtocol } from '../http/detect.js';
import type { HttpExchange } from './http/gate.js';
import { authorize, mtlsMode, needsHttp, type AuthzDecision, type AuthzHttp } from '../policy/index.js';
import type { MeshIndex } from '../state/mesh-index.js';
import type { MeshPod } from '../state/model.js';
import type { RequestObserver } from '../telemetry/request-record.js';
import { l7Inbound } from './l7.js';
import { destinationRecord } from './record.js';
import { reset } from '../transport/reset.js';
import { tcpConnect } from '../transport/tcp-connect.js';

export interface InboundRequest {
  /** principal in Istio's form "td/ns/x/sa/y"; absent for plaintext. `pod` only on the
   * same-node path, where the kernel identified the source pod. */
  source: { principal?: string; namespace?: string; ip: string; pod?: MeshPod };
  target: { ip: string; port: number };
  /** The HTTP version the source's L7 proxy will speak; absent for opaque TCP. */
  protocol?: HttpProtocol;
  /** Plaintext, whose protocol nobody declared: detect HTTP from the first bytes, waiting at
   * most this long for them (then opaque TCP), so its requests are reported too. */
  detectTimeoutMs?: number;
  /** Called for each request denied on an admitted connection (policies with HTTP fields). */
  onDenied?: (decision: AuthzDecision) => void;
}

export type InboundResult =
  | {
      /** What to relay: the pod socket itself, or the L7 filter in front of it. */
      stream: Duplex;
      /** The pod connection, for its byte counts. */
      podSocket: net.Socket;
      pod: MeshPod;
      decision: AuthzDecision;
    }
  | { status: number; reason: string; pod?: MeshPod; decision?: AuthzDecision };

export interface InboundDeps {
  index(): MeshIndex;
  connectTimeoutMs: number;
  /** How long the L7 path waits for a source's first bytes before deciding at L4
   * (--protocol-detect-timeout). */
  detectTimeoutMs: number;
  log: Logger;
  /** Told of every HTTP request served here (metrics, access log, tap). */
  observers?: readonly RequestObserver[];
}

/** An admitted connection, while it is open: what it was admitted on, to check again. */
interface OpenConnection {
  req: InboundRequest;
  podSocket: net.Socket;
  /** Through the L7 filters, which decide each request on the state as it is then. */
  filtered: boolean;
}

export class Inbound {
  readonly #deps: InboundDeps;
  readonly #open = new Set<OpenConnection>();

  constructor(deps: InboundDeps) {
    this.#deps = deps;
  }

  /** Decides, then dials the pod. Never throws: a refusal is a status and a reason. */
  async open(req: InboundRequest): Promise<InboundResult> {
    const view = this.#deps.index();
    const pod = view.podsByIP.get(req.target.ip);
    if (!pod || pod.nodeName !== view.nodeName) {
      return { status: 404, reason: `${req.target.ip} is not a pod on node ${view.nodeName}` };
    }
    const strict = strictRefusal(view, req, pod);
    if (strict) return { status: 403, pod, reason: strict };
    const perRequest = needsHttp(view.state, pod, req.target.port);
    const decision: AuthzDecision = perRequest
      ? { allowed: true, reason: 'each HTTP request is authorized (a policy on this port has HTTP fields)' }
      : authorizeOn(view, req, pod);
    if (!decision.allowed) {
      this.#deps.log.info({ source: req.source, target: req.target, reason: decision.reason }, 'inbound: connection denied');
      return { status: 403, pod, decision, reason: decision.reason };
    }
    const localAddress = view.node?.internalIP;
    const connected = await tcpConnect(req.target, `pod ${pod.namespace}/${pod.name} port ${req.target.port}`, this.#deps.connectTimeoutMs, localAddress);
    if (!('socket' in connected)) return { status: connected.failed === 'timeout' ? 504 : 503, pod, decision, reason: connected.reason };
    const { socket } = connected;
    const http = perRequest || req.protocol !== undefined || req.detectTimeoutMs !== undefined;
    // Each request is decided on the state as it is when it arrives.
    const gate = {
      decide: (fields?: AuthzHttp) => this.#decide(req, pod, fields),
      exchanged: (ex: HttpExchange) => this.#report(req, pod, ex),
    };
    const l7 = {
      ...this.#deps,
      ...(req.protocol ? { protocol: req.protocol } : {}),
      ...(req.detectTimeoutMs !== undefined ? { detectTimeoutMs: req.detectTimeoutMs } : {}),
    };
    const stream = http ? l7Inbound(socket, gate, l7) : socket;
    const open: OpenConnection = { req, podSocket: socket, filtered: http };
    this.#open.add(open);
    socket.once('close', () => this.#open.delete(open));
    return { stream, podSocket: socket, pod, decision };
  }

  /**
   * Checks every open connection against the mesh state as it is now, as ztunnel's policy
   * watcher does: one that would be refused if it opened now (STRICT without a peer identity;
   * for a byte relay, an AuthorizationPolicy that denies it) is reset on both sides and logged.
   * Connections through the L7 filters have each request decided as it comes.
   */
  recheck(): void {
    const view = this.#deps.index();
    for (const open of this.#open) {
      const { req } = open;
      const pod = view.podsByIP.get(req.target.ip);
      if (!pod || pod.nodeName !== view.nodeName) continue;
      const strict = strictRefusal(view, req, pod);
      const decision: AuthzDecision = strict
        ? { allowed: false, reason: strict }
        : open.filtered
          ? { allowed: true, reason: 'each HTTP request is authorized' }
          : authorizeOn(view, req, pod);
      if (decision.allowed) continue;
      this.#deps.log.info({ source: req.source, target: req.target, policy: decision.policy, reason: decision.reason }, 'inbound: open connection closed, the policy now denies it');
      req.onDenied?.(decision);
      this.#open.delete(open);
      reset(open.podSocket);
    }
  }

  #report(req: InboundRequest, pod: MeshPod, ex: HttpExchange): void {
    const observers = this.#deps.observers ?? [];
    if (observers.length === 0) return;
    const record = destinationRecord(this.#deps.index(), req, pod, ex);
    for (const observer of observers) observer.request(record);
  }

  /** One request's decision (or the connection's, without `http`) on the mesh state as it is now. */
  #decide(req: InboundRequest, pod: MeshPod, http?: AuthzHttp): AuthzDecision {
    const view = this.#deps.index();
    const decision = authorizeOn(view, req, view.podsByIP.get(req.target.ip) ?? pod, http);
    if (!decision.allowed) {
      const fields = { method: http?.method, path: http?.path, source: req.source.principal ?? req.source.ip, target: req.target, policy: decision.policy, reason: decision.reason };
      this.#deps.log.info(fields, http ? 'inbound: request denied' : 'inbound: connection denied (not HTTP)');
      req.onDenied?.(decision);
    }
    return decision;
  }
}

/** Why a connection without a peer identity may not reach this pod port (PeerAuthentication STRICT), if it may not. */
function strictRefusal(view: MeshIndex, req: InboundRequest, pod: MeshPod): string | undefined {
  if (req.source.principal || mtlsMode(view.state, pod, req.target.port) !== 'STRICT') return undefined;
  return `${pod.namespace}/${pod.name} port ${req.target.port} requires mTLS (PeerAuthentication STRICT)`;
}

/** The AuthorizationPolicy decision for the connection (or, with `http`, one of its requests) on `view`. */
function authorizeOn(view: MeshIndex, req: InboundRequest, pod: MeshPod, http?: AuthzHttp): AuthzDecision {
  return authorize(view.state, { source: req.source, destination: { pod, ip: req.target.ip, port: req.target.port }, ...(http ? { http } : {}) });
}
