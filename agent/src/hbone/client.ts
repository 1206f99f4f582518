// HBONE outbound: tunnels one TCP connection to a pod on another node as an HTTP/2 CONNECT
// stream over mutual TLS 1.3 to that node's :15008, with the source workload's certificate.
// Sessions are pooled per (source identity, node) and many tunnels share one; a rotated
// certificate starts a new session while the old one drains.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import {
  HBONE_ALPN,
  HboneError,
  HboneStream,
  formatAuthority,
  formatForwarded,
  parseProxyStatusDetails,
  rstCodeName,
  type HostPort,
} from './protocol.js';

const { NGHTTP2_CANCEL } = http2.constants;

export interface HboneClientCredentials {
  key: string;
  cert: string;
  ca: string;
  /** Changes when the certificate is renewed; a new serial means a new session. */
  serial: string;
}

export interface HboneNode {
  name: string;
  ip: string;
  /** 15008 */
  port: number;
}

export interface HboneConnectRequest {
  sourceIdentity: string;
  node: HboneNode;
  target: HostPort;
  /** The original client address, sent as `forwarded: for=<ip>`. */
  forwardedFor?: string;
  /** Extra request headers, e.g. traceparent, baggage. */
  headers?: Record<string, string>;
}

export interface HboneClientOptions {
  credentials: (sourceIdentity: string) => HboneClientCredentials | undefined;
  /** true when the node's (chain-verified) certificate is the expected one, else why not. */
  verifyServer: (nodeName: string, cert: tls.PeerCertificate) => true | string;
  log: Logger;
  /** Bound on TCP + TLS to the node, then separately on the answer to each CONNECT. Default 10 s. */
  connectTimeoutMs?: number;
  /** A session with no tunnel for this long is closed. Default 60 s. */
  idleTimeoutMs?: number;
  /** Cap on tunnels per session, below the server's SETTINGS_MAX_CONCURRENT_STREAMS. Default 100. */
  maxStreamsPerSession?: number;
}

export interface HboneSessionInfo {
  sourceIdentity: string;
  node: string;
  address: string;
  serial: string;
  streams: number;
  maxStreams: number;
  /** No new tunnels: rotated, GOAWAY received, idle or closing. */
  draining: boolean;
}

interface PooledSession {
  key: string;
  identity: string;
  node: HboneNode;
  serial: string;
  session: http2.ClientHttp2Session;
  /** Resolves once TCP + TLS are up and the server's SETTINGS arrived; rejects with an HboneError. */
  ready: Promise<void>;
  /** Resolves when the session or its socket has closed. */
  gone: Promise<void>;
  /** Tunnels open or being opened on this session: what the pool balances on. */
  streams: number;
  /** CONNECT streams actually sent and not yet closed: what the server's limit counts. */
  active: number;
  maxStreams: number;
  draining: boolean;
  idleTimer?: NodeJS.Timeout;
  goaway?: { code: number; data: string };
  /** The session's error, for tunnels that failed with a less telling one. */
  lastError?: Error;
}

/** checkServerIdentity's verdict, told apart from other TLS failures. */
class ServerRefused extends Error {}

export class HboneClient {
  readonly #opts: HboneClientOptions;
  readonly #connectTimeoutMs: number;
  /** Sessions that take new tunnels, by (identity, node). */
  readonly #pool = new Map<string, PooledSession[]>();
  /** Every open session, including draining ones. */
  readonly #live = new Set<PooledSession>();
  #closed = false;

  constructor(opts: HboneClientOptions) {
    this.#opts = opts;
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  }

  get sessions(): HboneSessionInfo[] {
    return [...this.#live].map((e) => ({
      sourceIdentity: e.identity,
      node: e.node.name,
      address: formatAuthority(e.node),
      serial: e.serial,
      streams: e.streams,
      maxStreams: e.maxStreams,
      draining: e.draining,
    }));
  }

  /** Resolves with the tunnel once the node answered 200; rejects with an HboneError. */
  async connect(req: HboneConnectRequest): Promise<HboneStream> {
    if (this.#closed) throw new HboneError('NM_ERR_HBONE_CLOSED', 'HBONE client is closed');
    const creds = this.#opts.credentials(req.sourceIdentity);
    if (!creds) {
      throw new HboneError(
        'NM_ERR_HBONE_NO_CREDENTIALS',
        `no certificate for ${req.sourceIdentity} to open HBONE to node ${req.node.name} (has its CSR been signed yet?)`,
      );
    }
    // Tunnels that join a session before its SETTINGS arrive may find it full (or draining)
    // once it is up; those go round again and land on another session.
    for (let attempt = 0; ; attempt += 1) {
      const entry = this.#checkout(req, creds);
      try {
        await entry.ready;
      } catch (err) {
        this.#release(entry);
        throw err;
      }
      if ((entry.active >= entry.maxStreams || entry.session.closed) && attempt < 3) {
        this.#release(entry);
        continue;
      }
      entry.active += 1;
      try {
        return await this.#request(entry, req);
      } catch (err) {
        entry.active -= 1;
        this.#release(entry);
        throw err;
      }
    }
  }

  /** No new tunnels; sessions close as their tunnels finish, and are reset at the deadline. */
  async close(drainMs = 0): Promise<void> {
    this.#closed = true;
    const entries = [...this.#live];
    for (const e of entries) this.#drain(e);
    const closed = Promise.all(entries.map((e) => e.gone));
    const timer = setTimeout(() => {
      // With a code, open tunnels see a reset (rstCode CANCEL), never a clean end of stream.
      for (const e of entries) e.session.destroy(new Error('HBONE client closed'), NGHTTP2_CANCEL);
    }, drainMs);
    await closed;
    clearTimeout(timer);
  }

  #checkout(req: HboneConnectRequest, creds: HboneClientCredentials): PooledSession {
    const key = `${req.sourceIdentity}\u0000${req.node.name}`;
    const list = this.#pool.get(key) ?? [];
    this.#pool.set(key, list);
    // A renewed certificate or a moved node: old sessions take no new tunnels and close when done.
    for (const e of [...list]) {
      if (e.serial !== creds.serial || e.node.ip !== req.node.ip || e.node.port !== req.node.port) this.#drain(e);
    }
    let entry = list.find((e) => e.streams < e.maxStreams);
    if (!entry) {
      entry = this.#createSession(key, req, creds);
      list.push(entry);
    }
    entry.streams += 1;
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    return entry;
  }

  #release(entry: PooledSession): void {
    entry.streams -= 1;
    if (entry.streams > 0 || entry.draining) return;
    entry.idleTimer = setTimeout(() => this.#drain(entry), this.#opts.idleTimeoutMs ?? 60_000);
    entry.idleTimer.unref();
  }

  /** Out of the pool; Node's close() sends GOAWAY and ends the session once its streams are done. */
  #drain(entry: PooledSession): void {
    if (entry.idleTimer) clearTimeout(entry.idleTimer);
    this.#unpool(entry);
    if (entry.draining) return;
    entry.draining = true;
    if (!entry.session.destroyed) entry.session.close();
  }

  #unpool(entry: PooledSession): void {
    const list = this.#pool.get(entry.key);
    if (!list) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#pool.delete(entry.key);
  }

  #createSession(key: string, req: HboneConnectRequest, creds: HboneClientCredentials): PooledSession {
    const { node } = req;
    const { log, verifyServer } = this.#opts;
    let tcpUp = false;
    let socket: tls.TLSSocket | undefined;
    const session = http2.connect(`https://${formatAuthority(node)}`, {
      settings: { enablePush: false },
      createConnection: () => {
        const raw = net.connect({ host: node.ip, port: node.port, noDelay: true });
        raw.once('connect', () => (tcpUp = true));
        socket = tls.connect({
          socket: raw,
          servername: node.name,
          key: creds.key,
          cert: creds.cert,
          ca: creds.ca,
          minVersion: 'TLSv1.3',
          ALPNProtocols: [HBONE_ALPN],
          rejectUnauthorized: true,
          // The chain is checked against `ca` first; which node it must be is verifyServer's call.
          checkServerIdentity: (_host, cert) => {
            const verdict = verifyServer(node.name, cert);
            return verdict === true ? undefined : new ServerRefused(verdict);
          },
        });
        return socket;
      },
    });
    let markGone = () => {};
    const entry: PooledSession = {
      key,
      identity: req.sourceIdentity,
      node: { ...node },
      serial: creds.serial,
      session,
      ready: Promise.resolve(),
      gone: new Promise<void>((resolve) => (markGone = resolve)),
      streams: 0,
      active: 0,
      maxStreams: this.#opts.maxStreamsPerSession ?? 100,
      draining: false,
    };
    this.#live.add(entry);
    let settle: { resolve: () => void; reject: (err: HboneError) => void } | undefined;
    entry.ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    entry.ready.catch(() => {});
    const timer = setTimeout(() => {
      const phase = !tcpUp ? 'TCP connect' : session.connecting ? 'TLS handshake' : 'waiting for HTTP/2 SETTINGS';
      session.destroy(
        new HboneError(
          'NM_ERR_HBONE_CONNECT_TIMEOUT',
          `HBONE to node ${describeNode(node)}: ${phase} timed out after ${this.#connectTimeoutMs} ms — ` +
            `maybe a NetworkPolicy or firewall blocks HBONE port ${node.port}`,
        ),
      );
    }, this.#connectTimeoutMs);
    let connected = false;
    let settings = false;
    const maybeReady = () => {
      if (!connected || !settings) return;
      clearTimeout(timer);
      settle?.resolve();
    };
    session.once('connect', () => {
      if (session.alpnProtocol !== HBONE_ALPN) {
        session.destroy(new Error(`node did not negotiate ALPN ${HBONE_ALPN}`));
        return;
      }
      connected = true;
      maybeReady();
    });
    session.on('remoteSettings', (remote) => {
      const cap = this.#opts.maxStreamsPerSession ?? 100;
      entry.maxStreams = Math.min(cap, remote.maxConcurrentStreams ?? cap);
      settings = true;
      maybeReady();
    });
    session.on('goaway', (code, _lastStreamID, data) => {
      entry.goaway = { code, data: data?.toString('utf8') ?? '' };
      this.#drain(entry);
    });
    session.on('error', (err) => {
      entry.lastError ??= err;
      log.debug({ node: node.name, identity: req.sourceIdentity, err }, 'hbone: session error');
    });
    // Node 20: when the TLS socket fails after 'connect' (a TLS 1.3 alert about our certificate),
    // neither the socket nor the session ever emits 'close' unless the socket is destroyed again.
    socket?.on('error', (err) => {
      entry.lastError ??= err;
      setImmediate(() => socket?.destroy());
    });
    const gone = () => {
      clearTimeout(timer);
      if (entry.idleTimer) clearTimeout(entry.idleTimer);
      entry.draining = true;
      this.#unpool(entry);
      this.#live.delete(entry);
      settle?.reject(this.#failure(entry, undefined, tcpUp ? 'tls' : 'tcp'));
      markGone();
    };
    session.once('close', gone);
    socket?.once('close', gone);
    return entry;
  }

  #request(entry: PooledSession, req: HboneConnectRequest): Promise<HboneStream> {
    const target = formatAuthority(req.target);
    const what = `HBONE to node ${describeNode(req.node)} for ${target}`;
    return new Promise((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = entry.session.request(
          {
            ...req.headers,
            ':method': 'CONNECT',
            ':authority': target,
            ...(req.forwardedFor ? { forwarded: formatForwarded(req.forwardedFor) } : {}),
          },
          { endStream: false },
        );
      } catch (err) {
        reject(this.#failure(entry, err as Error, 'stream'));
        return;
      }
      let settled = false;
      const fail = (err: HboneError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!stream.closed) stream.close(NGHTTP2_CANCEL);
        reject(err);
      };
      const timer = setTimeout(
        () =>
          fail(
            new HboneError(
              'NM_ERR_HBONE_CONNECT_TIMEOUT',
              `${what}: no answer to CONNECT within ${this.#connectTimeoutMs} ms (is the pod slow to accept?)`,
            ),
          ),
        this.#connectTimeoutMs,
      );
      stream.on('error', (err) => fail(this.#failure(entry, err, 'stream', stream.rstCode, target)));
      stream.once('close', () => fail(this.#failure(entry, undefined, 'stream', stream.rstCode, target)));
      stream.once('response', (headers) => {
        const status = Number(headers[':status']);
        if (status !== 200) {
          const reason = parseProxyStatusDetails(headers['proxy-status']) ?? http.STATUS_CODES[status] ?? '';
          fail(new HboneError('NM_ERR_HBONE_REFUSED', `${what} refused: ${status} ${reason}`, status));
          return;
        }
        settled = true;
        clearTimeout(timer);
        stream.removeAllListeners('error');
        stream.removeAllListeners('close');
        const tunnel = new HboneStream(stream);
        tunnel.once('close', () => {
          entry.active -= 1;
          this.#release(entry);
        });
        resolve(tunnel);
      });
    });
  }

  /**
   * Explains why a session or a CONNECT failed, from the error, GOAWAY or reset seen. `phase`:
   * before TCP was up, before the node's SETTINGS arrived (TLS), or once the session worked.
   */
  #failure(
    entry: PooledSession,
    err: Error | undefined,
    phase: 'tcp' | 'tls' | 'stream',
    rstCode?: number,
    target?: string,
  ): HboneError {
    const node = describeNode(entry.node);
    const cause = err ?? entry.lastError;
    if (cause instanceof HboneError) return cause;
    if (cause instanceof ServerRefused) {
      return new HboneError(
        'NM_ERR_HBONE_PEER_IDENTITY',
        `HBONE to node ${node}: the node's certificate was refused: ${cause.message}`,
        undefined,
        { cause },
      );
    }
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    if (entry.goaway && entry.goaway.code !== 0) {
      const why = entry.goaway.data || rstCodeName(entry.goaway.code);
      return new HboneError('NM_ERR_HBONE_SESSION', `HBONE to node ${node}: the node closed the session: ${why}`, undefined, { cause });
    }
    if (phase === 'tcp' && code) {
      return new HboneError(
        'NM_ERR_HBONE_UNREACHABLE',
        `HBONE to node ${node} failed: ${code} — is the nodemesh agent running there, listening on ${entry.node.port}?`,
        undefined,
        { cause },
      );
    }
    if (cause && (code?.startsWith('ERR_SSL_') || code?.startsWith('ERR_TLS_') || isX509Code(code) || /alpn/i.test(cause.message))) {
      const why = (cause as { reason?: string }).reason ?? cause.message;
      return new HboneError(
        'NM_ERR_HBONE_TLS',
        `TLS handshake with node ${node} failed: ${why} — is the peer in the same trust domain / CA?`,
        undefined,
        { cause },
      );
    }
    if (phase === 'tls') {
      // A Node server closes without an alert when it rejects the client chain (TLS 1.3 checks
      // it after the client's side of the handshake is done), so a bare close here means that.
      const why = cause ? ((cause as { reason?: string }).reason ?? cause.message) : 'the node closed the connection before HTTP/2 started (it did not accept our client certificate?)';
      return new HboneError(
        'NM_ERR_HBONE_TLS',
        `TLS handshake with node ${node} failed: ${why} — is the peer in the same trust domain / CA?`,
        undefined,
        { cause },
      );
    }
    if (rstCode !== undefined && rstCode !== 0 && target) {
      return new HboneError('NM_ERR_HBONE_SESSION', `HBONE to node ${node} for ${target}: the node reset the CONNECT (${rstCodeName(rstCode)})`);
    }
    return new HboneError(
      'NM_ERR_HBONE_SESSION',
      `HBONE to node ${node}: connection closed before the node answered${cause ? `: ${cause.message}` : ''}`,
      undefined,
      { cause },
    );
  }
}

function describeNode(node: HboneNode): string {
  return `${node.name} (${formatAuthority(node)})`;
}

// OpenSSL verification results as Node reports them for the server's chain.
function isX509Code(code: string | undefined): boolean {
  return !!code && /^(UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|INVALID_|HOSTNAME_MISMATCH)/.test(code);
}
