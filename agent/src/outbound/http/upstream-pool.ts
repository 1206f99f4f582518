// Upstream connections of the L7 proxy, pooled per (source pod, endpoint, protocol): HTTP/1.1
// keep-alive connections (one request at a time each, h1-connection.ts) and one multiplexed
// HTTP/2 session per endpoint (gRPC streams share it). A connection is an HBONE tunnel or an
// in-process inbound stream from the dialer; what fails before a request was sent is a connect
// failure the forwarder may retry anywhere, what fails after is a reset.
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { endToEnd, type HeaderMap } from '../../http/headers.js';
import { H1Connection, type H1Owner } from './h1-connection.js';
import { UpstreamError, type UpstreamRequest, type UpstreamResponse } from './upstream.js';

const { NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

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
  /** Idle HTTP/1.1 connections by key, the most recently used last. */
  readonly #idleH1 = new Map<string, H1Connection[]>();
  /** Every open HTTP/1.1 connection, with its key. */
  readonly #h1 = new Map<H1Connection, string>();
  readonly #retired = new WeakSet<H1Connection>();
  readonly #sessions = new Map<string, H2Entry>();
  readonly #owner: H1Owner = {
    idle: (conn) => {
      const key = this.#h1.get(conn);
      if (key === undefined || this.#retired.has(conn)) return conn.destroy();
      let list = this.#idleH1.get(key);
      if (!list) this.#idleH1.set(key, (list = []));
      list.push(conn);
      conn.idleTimer = setTimeout(() => conn.destroy(), conn.idleTimeoutMs);
      conn.idleTimer.unref();
    },
    closed: (conn) => {
      const key = this.#h1.get(conn);
      this.#h1.delete(conn);
      const list = key === undefined ? undefined : this.#idleH1.get(key);
      const i = list?.indexOf(conn) ?? -1;
      if (i >= 0) list!.splice(i, 1);
      if (list?.length === 0) this.#idleH1.delete(key!);
    },
  };

  /** key identifies (source pod, endpoint); dial is used when no pooled connection is free. */
  send(protocol: 'h1' | 'h2', key: string, dial: Dial, req: UpstreamRequest, limits: PoolLimits): Attempt {
    return protocol === 'h1' ? this.#sendH1(`${key}|h1`, dial, req, limits) : this.#sendH2(`${key}|h2`, dial, req, limits);
  }

  /** Upstream connections open now, for status views. */
  get size(): { h1: number; h2: number } {
    return { h1: this.#h1.size, h2: this.#sessions.size };
  }

  close(): void {
    for (const conn of [...this.#h1.keys()]) conn.destroy();
    for (const entry of this.#sessions.values()) void entry.session.then((s) => s.destroy(), () => {});
    this.#sessions.clear();
  }

  /**
   * No pooled connection takes another request: each was admitted by the destination under
   * the policies of its time, so a policy change must not ride on it. Requests in flight finish.
   */
  retireAll(): void {
    for (const conn of this.#h1.keys()) this.#retired.add(conn);
    for (const list of [...this.#idleH1.values()]) for (const conn of [...list]) conn.destroy();
    for (const entry of this.#sessions.values()) void entry.session.then((s) => s.close(), () => {});
    this.#sessions.clear();
  }

  #sendH1(key: string, dial: Dial, req: UpstreamRequest, limits: PoolLimits): Attempt {
    const asked = performance.now();
    let connectMs = 0;
    let cancelled: UpstreamError | undefined;
    let exchange: ReturnType<H1Connection['exchange']> | undefined;
    const start = (conn: H1Connection): Promise<UpstreamResponse> => {
      clearTimeout(conn.idleTimer);
      conn.idleTimeoutMs = limits.idleTimeoutMs;
      connectMs = performance.now() - asked;
      const last = limits.maxRequestsPerConnection !== undefined && conn.uses + 1 >= limits.maxRequestsPerConnection;
      exchange = conn.exchange(req, last);
      return exchange.response;
    };
    const pooled = this.#idleH1.get(key)?.pop();
    const response = pooled
      ? start(pooled)
      : dial().then(
          (stream) => {
            const conn = new H1Connection(stream, this.#owner);
            this.#h1.set(conn, key);
            conn.idleTimeoutMs = limits.idleTimeoutMs;
            // Given up while dialing: the fresh connection serves the next request instead.
            if (cancelled) {
              this.#owner.idle(conn);
              throw cancelled;
            }
            return start(conn);
          },
          (err: unknown) => {
            throw asUpstreamError(err);
          },
        );
    return {
      response,
      cancel: () => {
        req.body.detach();
        cancelled = new UpstreamError('timeout', 'attempt cancelled', 'UT');
        exchange?.cancel(cancelled);
      },
      connectMs: () => connectMs,
    };
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
