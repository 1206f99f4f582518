// Upstream connections of the L7 proxy, pooled per (source pod, endpoint, protocol): HTTP/1.1
// keep-alive connections (one request at a time each) and one multiplexed HTTP/2 session per
// endpoint (gRPC streams share it). A connection is an HBONE tunnel or an in-process inbound
// stream from the dialer; what fails before a request was sent is a connect failure the
// forwarder may retry anywhere, what fails after is a reset.
import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex, Readable } from 'node:stream';
import type { ResponseFlag } from '../telemetry/flow-table.js';
import { endToEnd, type HeaderMap } from './headers.js';
import type { RequestBody } from './request-body.js';

const { NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

export type FailureKind = 'connect' | 'reset' | 'refused-stream' | 'timeout';

/** Why an attempt got no response head. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly flag: ResponseFlag,
    /** The status the destination refused with (e.g. 403 from its authorization). */
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  /** Ends when the response does; errors when the upstream resets it. */
  body: Readable;
  /** The response has no body (HEAD, 204, gRPC trailers-only). */
  endStream: boolean;
  /** Trailers, once the body has ended. */
  trailers(): HeaderMap;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  headers: HeaderMap;
  body: RequestBody;
}

export interface Attempt {
  response: Promise<UpstreamResponse>;
  /** Gives the attempt up (per-try timeout, client gone). */
  cancel(): void;
  /** Time spent waiting for a connection (0 on a pooled one): not the endpoint's latency. */
  connectMs(): number;
}

/** Opens a connection to the endpoint, or rejects with an UpstreamError of kind 'connect'. */
export type Dial = () => Promise<Duplex>;

export interface PoolLimits {
  maxRequestsPerConnection?: number;
  idleTimeoutMs: number;
}

interface H2Entry {
  session: Promise<http2.ClientHttp2Session>;
  requests: number;
  active: number;
  idle?: NodeJS.Timeout;
}

export class UpstreamPool {
  readonly #agents = new Map<string, http.Agent>();
  readonly #sessions = new Map<string, H2Entry>();
  readonly #idle = new WeakMap<Duplex, NodeJS.Timeout>();
  readonly #uses = new WeakMap<object, number>();
  readonly #retired = new WeakSet<http.Agent>();

  /** key identifies (source pod, endpoint); dial is used when no pooled connection is free. */
  send(protocol: 'h1' | 'h2', key: string, dial: Dial, req: UpstreamRequest, limits: PoolLimits): Attempt {
    return protocol === 'h1' ? this.#sendH1(`${key}|h1`, dial, req, limits) : this.#sendH2(`${key}|h2`, dial, req, limits);
  }

  /** Upstream connections open now, for status views. */
  get size(): { h1: number; h2: number } {
    let h1 = 0;
    for (const a of this.#agents.values()) {
      for (const list of [...Object.values(a.sockets), ...Object.values(a.freeSockets)]) h1 += list?.length ?? 0;
    }
    return { h1, h2: this.#sessions.size };
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    for (const entry of this.#sessions.values()) void entry.session.then((s) => s.destroy(), () => {});
    this.#agents.clear();
    this.#sessions.clear();
  }

  /**
   * No pooled connection takes another request: each was admitted by the destination under
   * the policies of its time, so a policy change must not ride on it. Requests in flight finish.
   */
  retireAll(): void {
    for (const agent of this.#agents.values()) {
      this.#retired.add(agent);
      for (const list of Object.values(agent.freeSockets)) for (const socket of list ?? []) socket.destroy();
    }
    for (const entry of this.#sessions.values()) void entry.session.then((s) => s.close(), () => {});
    this.#agents.clear();
    this.#sessions.clear();
  }

  #sendH1(key: string, dial: Dial, req: UpstreamRequest, limits: PoolLimits): Attempt {
    const agent = this.#agent(key, dial, limits.idleTimeoutMs);
    const headers: HeaderMap = { ...req.headers, host: req.authority };
    // Node's server already answered 100-continue to the client.
    delete headers.expect;
    const creq = http.request({ agent, method: req.method, path: req.path, headers, setHost: false });
    const asked = performance.now();
    let connectMs = 0;
    creq.on('socket', (socket) => {
      connectMs = performance.now() - asked;
      clearTimeout(this.#idle.get(socket));
      const uses = (this.#uses.get(socket) ?? 0) + 1;
      this.#uses.set(socket, uses);
      if (limits.maxRequestsPerConnection !== undefined && uses >= limits.maxRequestsPerConnection) creq.shouldKeepAlive = false;
    });
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      creq.once('response', (res) => {
        resolve({
          status: res.statusCode ?? 502,
          headers: endToEnd(res.headers),
          body: res,
          endStream: false,
          trailers: () => endToEnd(res.trailers),
        });
      });
      creq.once('error', (err) => reject(asUpstreamError(err)));
    });
    if (req.body.empty) creq.end();
    else req.body.attach(creq);
    return {
      response,
      cancel: () => {
        req.body.detach();
        creq.destroy(new UpstreamError('timeout', 'attempt cancelled', 'UT'));
      },
      connectMs: () => connectMs,
    };
  }

  #agent(key: string, dial: Dial, idleTimeoutMs: number): http.Agent {
    let agent = this.#agents.get(key);
    if (agent) return agent;
    agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
    // Node's Agent takes an asynchronous connection factory through the callback form.
    (agent as unknown as { createConnection: unknown }).createConnection = (_opts: unknown, done: (err: Error | null, s?: Duplex) => void) => {
      dial().then(
        (stream) => {
          // As a TCP socket without allowHalfOpen: the upstream's FIN (a pod closing an idle
          // keep-alive connection) ends our side too, so the Agent drops the connection
          // instead of handing a half-closed tunnel to the next request.
          stream.once('end', () => stream.end());
          done(null, socketLike(stream));
        },
        (err: unknown) => done(asUpstreamError(err)),
      );
      return undefined;
    };
    agent.on('free', (socket: Duplex) => {
      if (this.#retired.has(agent as http.Agent)) return void socket.destroy();
      const timer = setTimeout(() => socket.destroy(), idleTimeoutMs);
      timer.unref();
      this.#idle.set(socket, timer);
    });
    this.#agents.set(key, agent);
    return agent;
  }

  #sendH2(key: string, dial: Dial, req: UpstreamRequest, limits: PoolLimits): Attempt {
    const entry = this.#session(key, dial);
    entry.requests += 1;
    entry.active += 1;
    clearTimeout(entry.idle);
    // The last request this session may carry: new ones get a fresh session.
    const last = limits.maxRequestsPerConnection !== undefined && entry.requests >= limits.maxRequestsPerConnection;
    if (last) this.#sessions.delete(key);
    let stream: http2.ClientHttp2Stream | undefined;
    let cancelled = false;
    const done = () => {
      entry.active -= 1;
      if (entry.active > 0 || this.#sessions.get(key) !== entry) return;
      entry.idle = setTimeout(() => {
        this.#sessions.delete(key);
        void entry.session.then((s) => s.close(), () => {});
      }, limits.idleTimeoutMs);
      entry.idle.unref();
    };
    const asked = performance.now();
    let connectMs = 0;
    const response = entry.session.then(
      (session) =>
        new Promise<UpstreamResponse>((resolve, reject) => {
          connectMs = performance.now() - asked;
          if (cancelled) {
            done();
            return reject(new UpstreamError('timeout', 'attempt cancelled', 'UT'));
          }
          try {
            stream = session.request(
              { ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': 'http', ...req.headers },
              { endStream: req.body.empty },
            );
          } catch (err) {
            done();
            return reject(new UpstreamError('refused-stream', `upstream session closing: ${(err as Error).message}`, 'UF'));
          }
          const s = stream;
          let trailers: HeaderMap = {};
          let responded = false;
          s.on('error', () => {});
          s.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = endToEnd(t)));
          s.once('response', (h: http2.IncomingHttpHeaders, flags: number) => {
            responded = true;
            resolve({
              status: Number(h[':status'] ?? 502),
              headers: endToEnd(h),
              body: s,
              endStream: (flags & NGHTTP2_FLAG_END_STREAM) !== 0,
              trailers: () => trailers,
            });
          });
          s.once('close', () => {
            done();
            if (responded) return;
            const refused = s.rstCode === NGHTTP2_REFUSED_STREAM;
            reject(new UpstreamError(refused ? 'refused-stream' : 'reset', `upstream reset the stream (code ${s.rstCode ?? 'none'})`, 'UR'));
          });
          if (!req.body.empty) req.body.attach(s);
        }),
      (err: unknown) => {
        done();
        throw asUpstreamError(err);
      },
    );
    if (last) {
      // Closed once this request's stream is open: a closing session refuses new streams.
      const close = () => void entry.session.then((s) => s.close(), () => {});
      response.then(close, close);
    }
    return {
      response,
      cancel: () => {
        cancelled = true;
        req.body.detach();
        if (stream && !stream.closed) stream.close(NGHTTP2_CANCEL);
      },
      connectMs: () => connectMs,
    };
  }

  #session(key: string, dial: Dial): H2Entry {
    const existing = this.#sessions.get(key);
    if (existing) return existing;
    const entry: H2Entry = { requests: 0, active: 0, session: undefined as unknown as Promise<http2.ClientHttp2Session> };
    const forget = () => {
      if (this.#sessions.get(key) === entry) this.#sessions.delete(key);
    };
    entry.session = dial().then((stream) => {
      const session = http2.connect('http://upstream', { createConnection: () => socketLike(stream) });
      session.on('error', forget);
      session.once('goaway', forget);
      session.once('close', forget);
      return session;
    });
    entry.session.catch(forget);
    this.#sessions.set(key, entry);
    return entry;
  }
}

function asUpstreamError(err: unknown): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const e = err as NodeJS.ErrnoException;
  return new UpstreamError('reset', `upstream connection ${e.code ?? 'failed'}: ${e.message}`, 'UR');
}

/** Node's HTTP clients call socket methods a tunnel stream lacks; they mean nothing there. */
function socketLike(stream: Duplex): Duplex {
  const s = stream as Duplex & Record<string, unknown>;
  for (const name of ['setKeepAlive', 'setNoDelay', 'setTimeout', 'ref', 'unref']) {
    if (typeof s[name] !== 'function') s[name] = () => s;
  }
  return stream;
}
