// HBONE inbound (:15008): HTTP/2 CONNECT over mutual TLS 1.3 from other node proxies. The peer's
// chain and SPIFFE identity are checked once per connection, `open` (authorization + pod connect)
// once per stream; then 200 and the stream carries the pod connection's bytes, FIN and RST.
import { listen } from '../transport/listen.js';
import http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import {
  HBONE_ALPN,
  HboneStream,
  formatAuthority,
  formatProxyStatus,
  parseAuthority,
  parseForwardedFor,
  type HostPort,
} from './protocol.js';
import { reset } from '../transport/reset.js';
import { relay } from '../transport/relay.js';

const { NGHTTP2_INADEQUATE_SECURITY, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface HboneServerCredentials {
  key: string;
  cert: string;
  /** Trust anchors for client chains. */
  ca: string;
}

export interface HboneTunnelRequest {
  /** The peer's SPIFFE id, as peerIdentity returned it. */
  peer: string;
  target: HostPort;
  /** Address of the peer node proxy: the TLS connection's remote address. */
  peerAddress: string;
  /** The original client address, from the `forwarded: for=` header when the peer sent one. */
  forwardedFor?: string;
  headers: http2.IncomingHttpHeaders;
}

/** A stream to relay (a connected allowHalfOpen socket, or a filter in front of one), or the
 * HTTP status and reason of a refusal. */
export type HboneOpenResult = { stream: Duplex } | { status: number; reason: string };

export interface HboneServerOptions {
  /** Called as each TCP connection arrives, so a rotated certificate applies to new connections. */
  credentials: () => HboneServerCredentials;
  /** The peer's SPIFFE id from its (chain-verified) certificate, or why it is refused. */
  peerIdentity: (cert: tls.PeerCertificate) => string | { reason: string };
  /** Authorize and connect one tunnel. 401/403 for a denial, 503 when the pod is unreachable. */
  open: (tunnel: HboneTunnelRequest) => Promise<HboneOpenResult>;
  log: Logger;
  /** Answer 504 when `open` has not settled within this time. Default 10 s. */
  connectTimeoutMs?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised per connection. Default 1000. */
  maxConcurrentStreams?: number;
}

export interface HboneServerStats {
  /** TLS connections whose chain and identity were accepted. */
  connections: number;
  /** Handshakes that failed: no client certificate, unknown CA, expired, no ALPN h2, ... */
  refusedHandshakes: number;
  /** Connections closed because peerIdentity refused the peer. */
  refusedIdentities: number;
  /** Tunnels answered 200. */
  tunnels: number;
  /** CONNECT requests answered with an error status. */
  refusedTunnels: number;
  activeTunnels: number;
}

export class HboneServer {
  readonly #opts: HboneServerOptions;
  readonly #server: http2.Http2SecureServer;
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #tunnels = new Set<HboneStream>();
  /** Accepted connections and whom they authenticate; a stream on any other is refused. */
  readonly #peers = new WeakMap<http2.ServerHttp2Session, { id: string; address: string }>();
  readonly #stats: HboneServerStats = {
    connections: 0,
    refusedHandshakes: 0,
    refusedIdentities: 0,
    tunnels: 0,
    refusedTunnels: 0,
    activeTunnels: 0,
  };
  #credentials: HboneServerCredentials;
  #closing = false;

  constructor(opts: HboneServerOptions) {
    this.#opts = opts;
    this.#credentials = opts.credentials();
    this.#server = http2.createSecureServer({
      ...secureContextOptions(this.#credentials),
      ALPNProtocols: [HBONE_ALPN],
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: 10_000,
      settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000, enablePush: false },
    });
    // Runs before the TLS socket is built from the server's current context, so fresh
    // credentials apply to this connection while existing ones keep theirs.
    this.#server.prependListener('connection', (socket: net.Socket) => {
      this.#refreshCredentials();
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      this.#stats.refusedHandshakes += 1;
      // A chain that fails verification is closed without an alert and reported as ECONNRESET;
      // the verification result says why.
      const reason = socket.authorizationError ? `client certificate: ${String(socket.authorizationError)}` : (err.code ?? err.message);
      opts.log.info({ peerAddress: socket.remoteAddress, reason }, 'hbone: TLS handshake refused');
    });
    this.#server.on('unknownProtocol', (socket: tls.TLSSocket) => {
      this.#stats.refusedHandshakes += 1;
      opts.log.info({ peerAddress: socket.remoteAddress, reason: 'client did not negotiate ALPN h2' }, 'hbone: TLS handshake refused');
      socket.destroy();
    });
    this.#server.on('session', (session: http2.ServerHttp2Session) => this.#onSession(session));
    this.#server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      const peer = this.#peers.get(stream.session as http2.ServerHttp2Session);
      if (!peer) {
        stream.close(NGHTTP2_REFUSED_STREAM);
        return;
      }
      void this.#onStream(stream, headers, peer.id, peer.address);
    });
  }

  listen(host: string, port: number): Promise<void> {
    return listen(this.#server, 'HBONE listener', 'NM_ERR_HBONE_LISTEN', host, port);
  }


  get address(): string {
    const a = this.#server.address();
    if (!a || typeof a !== 'object') return '';
    return formatAuthority({ ip: a.address, port: a.port });
  }

  get stats(): HboneServerStats {
    return { ...this.#stats, activeTunnels: this.#tunnels.size };
  }

  /** GOAWAY to every peer (no new tunnels; open ones go on), then reset what is left at the deadline. */
  async close(drainMs: number): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const session of this.#sessions) session.close();
    const timer = setTimeout(() => {
      for (const tunnel of this.#tunnels) tunnel.resetAndDestroy();
      for (const session of this.#sessions) session.destroy();
      for (const socket of this.#sockets) socket.destroy();
    }, drainMs);
    await closed;
    clearTimeout(timer);
  }

  #refreshCredentials(): void {
    let next: HboneServerCredentials;
    try {
      next = this.#opts.credentials();
    } catch (err) {
      this.#opts.log.warn({ err }, 'hbone: credentials() failed; keeping the previous certificate');
      return;
    }
    const current = this.#credentials;
    if (next.key === current.key && next.cert === current.cert && next.ca === current.ca) return;
    this.#server.setSecureContext(secureContextOptions(next));
    this.#credentials = next;
    this.#opts.log.info('hbone: new server certificate in use for new connections');
  }

  #onSession(session: http2.ServerHttp2Session): void {
    const { log } = this.#opts;
    // The session's socket is a proxy that forwards read-only calls to the TLS socket.
    const socket = session.socket as tls.TLSSocket;
    const peerAddress = socket.remoteAddress ?? '';
    session.on('error', (err) => log.debug({ peerAddress, err }, 'hbone: session error'));
    const peer = this.#identify(socket);
    if (typeof peer !== 'string' || this.#closing) {
      const reason = typeof peer === 'string' ? 'server is shutting down' : peer.reason;
      if (typeof peer !== 'string') this.#stats.refusedIdentities += 1;
      log.info({ peerAddress, reason }, 'hbone: peer refused; connection closed before any stream');
      // GOAWAY's debug data tells the peer why; it is chain-verified, so this leaks nothing new.
      session.goaway(NGHTTP2_INADEQUATE_SECURITY, 0, Buffer.from(`peer refused: ${reason}`));
      session.destroy(new Error(`peer refused: ${reason}`), NGHTTP2_INADEQUATE_SECURITY);
      return;
    }
    this.#stats.connections += 1;
    this.#sessions.add(session);
    this.#peers.set(session, { id: peer, address: peerAddress });
    session.once('close', () => this.#sessions.delete(session));
    log.debug({ peer, peerAddress }, 'hbone: peer connected');
  }

  #identify(socket: tls.TLSSocket): string | { reason: string } {
    if (!socket.authorized) return { reason: `certificate chain not verified: ${String(socket.authorizationError)}` };
    const cert = socket.getPeerCertificate(true);
    if (!cert || Object.keys(cert).length === 0) return { reason: 'no client certificate' };
    try {
      return this.#opts.peerIdentity(cert);
    } catch (err) {
      return { reason: `peerIdentity failed: ${err instanceof Error ? err.message : String(err)}` };
    }
  }

  async #onStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    peer: string,
    peerAddress: string,
  ): Promise<void> {
    // Errors before the tunnel exists (client gave up) only mean there is nobody to answer.
    stream.on('error', () => {});
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      this.#refuse(stream, peer, 405, `HBONE accepts only CONNECT, not ${method}`);
      return;
    }
    const authority = headers[':authority'];
    const target = parseAuthority(authority);
    if (!target) {
      this.#refuse(stream, peer, 400, `malformed :authority ${JSON.stringify(authority)}; expected <pod ip>:<port>`);
      return;
    }
    const forwardedFor = parseForwardedFor(headers.forwarded);
    const request: HboneTunnelRequest = { peer, target, peerAddress, headers, ...(forwardedFor ? { forwardedFor } : {}) };
    const result = await this.#open(request);
    if (!('stream' in result)) {
      this.#refuse(stream, peer, result.status, result.reason, formatAuthority(target));
      return;
    }
    const upstream = result.stream;
    if (stream.closed || stream.destroyed) {
      reset(upstream);
      return;
    }
    if (upstream.destroyed) {
      this.#refuse(stream, peer, 503, `${formatAuthority(target)} closed the connection before the tunnel was set up`);
      return;
    }
    if (upstream instanceof net.Socket) {
      upstream.allowHalfOpen = true;
      upstream.setNoDelay(true);
    }
    stream.respond({ ':status': 200 });
    const tunnel = new HboneStream(stream);
    this.#stats.tunnels += 1;
    this.#tunnels.add(tunnel);
    const started = Date.now();
    const done = await relay(tunnel, upstream);
    this.#tunnels.delete(tunnel);
    this.#opts.log.debug(
      {
        peer,
        target: formatAuthority(target),
        forwardedFor,
        bytesFromPeer: done.bytesFromDownstream,
        bytesToPeer: done.bytesFromUpstream,
        durationMs: Date.now() - started,
        error: done.error?.code ?? done.error?.message,
      },
      'hbone: tunnel closed',
    );
  }

  /** `open`, bounded by connectTimeoutMs; a socket that arrives after the deadline is reset. */
  #open(request: HboneTunnelRequest): Promise<HboneOpenResult> {
    const timeoutMs = this.#opts.connectTimeoutMs ?? 10_000;
    return new Promise((resolve) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        resolve({ status: 504, reason: `no connection to ${formatAuthority(request.target)} within ${timeoutMs} ms` });
      }, timeoutMs);
      this.#opts.open(request).then(
        (result) => {
          // Until splice() listens, an error must not crash the agent; it shows as `destroyed`.
          if ('stream' in result) result.stream.on('error', () => {});
          if (settled) {
            if ('stream' in result) reset(result.stream);
            return;
          }
          settled = true;
          clearTimeout(timer);
          resolve(result);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.#opts.log.warn({ err }, 'hbone: open() failed');
          resolve({ status: 503, reason: `cannot open ${formatAuthority(request.target)}: ${err instanceof Error ? err.message : String(err)}` });
        },
      );
    });
  }

  #refuse(stream: http2.ServerHttp2Stream, peer: string, status: number, reason: string, target?: string): void {
    this.#stats.refusedTunnels += 1;
    this.#opts.log.info({ peer, target, status, reason }, 'hbone: CONNECT refused');
    if (stream.closed || stream.destroyed) return;
    stream.respond({ ':status': status, 'proxy-status': formatProxyStatus(status, reason) }, { endStream: true });
  }
}

function secureContextOptions(c: HboneServerCredentials): tls.SecureContextOptions {
  return { key: c.key, cert: c.cert, ca: c.ca, minVersion: 'TLSv1.3' };
}
