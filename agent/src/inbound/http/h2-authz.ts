// The inbound L7 filter for HTTP/2 with prior knowledge (h2c, what gRPC speaks): Node's HTTP/2
// server terminates the source's connection, each stream is authorized, an allowed one is
// forwarded on one HTTP/2 connection to the pod (over the socket already dialled, opened only
// when a first stream is allowed), a denied one answered here: 403, or for gRPC what Envoy
// answers (200, grpc-status 7). HTTP/2 frames are hop-by-hop, so re-framing changes nothing
// the application sees; headers, body and trailers are carried as they came. Each stream is
// told to the gate once closed (status, gRPC status, body sizes, decision).
import http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { DENIED_BODY, ExchangeTally, mergeHeaders, type HttpGate } from './gate.js';
import { fromRaw, type HeaderMap } from '../../http/headers.js';
import { normalizePath } from '../../http/normalize-path.js';

/** Node's HTTP/2 server adds a Date header unless told not to (`sendDate`, undeclared in its types). */
const NO_DATE = { sendDate: false };
/** How long streams in flight may go on once the source ended its side of the connection. */
const HALF_CLOSED_GRACE_MS = 1000;
const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR } = http2.constants;

/**
 * Serves one h2c connection from `client` (the source's side, preface unread) to `pod`. The
 * caller calls the function returned once the source has ended its side. A source closing
 * well sends GOAWAY first, and Node closes the session on it; but Node's HTTP/2 ignores the
 * end of `client` without one, and after nghttp2 has answered a protocol error with GOAWAY it
 * stops reading `client` for good and never closes it. A source that ended can send no more
 * frames (not even WINDOW_UPDATE), so the connection is closed `graceMs` after, as Envoy
 * closes on a downstream half-close, with streams in flight given that long to finish.
 */
export function serveH2(client: Duplex, pod: net.Socket, gate: HttpGate, log: Logger, graceMs = HALF_CLOSED_GRACE_MS): () => void {
  let upstream: http2.ClientHttp2Session | undefined;
  let session: http2.ServerHttp2Session | undefined;
  const toPod = (): http2.ClientHttp2Session => {
    if (upstream) return upstream;
    upstream = http2.connect(`http://${pod.remoteAddress}:${pod.remotePort}`, { createConnection: () => pod, settings: { enablePush: false } });
    upstream.on('error', (err) => log.debug({ err }, 'inbound h2: pod connection error'));
    // The pod going away ends the source's connection the same way: GOAWAY, streams in flight finish.
    upstream.once('close', () => session?.close());
    return upstream;
  };
  const server = http2.createServer({ settings: { enablePush: false } });
  server.on('session', (s: http2.ServerHttp2Session) => {
    session = s;
    s.on('error', (err) => log.debug({ err }, 'inbound h2: source connection error'));
    s.once('close', () => {
      if (upstream) upstream.close();
      else pod.destroy();
    });
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    stream.on('error', () => {});
    const host = String(headers[':authority'] ?? headers.host ?? '');
    const tally = new ExchangeTally(gate, {
      httpVersion: '2',
      grpc: isGrpc(headers),
      method: String(headers[':method']),
      authority: host,
      path: String(headers[':path'] ?? ''),
      requestId: typeof headers['x-request-id'] === 'string' ? headers['x-request-id'] : undefined,
      traceparent: typeof headers.traceparent === 'string' ? headers.traceparent : undefined,
    });
    stream.on('data', (chunk: Buffer) => (tally.exchange.requestBytes += chunk.length));
    const path = normalizePath(tally.exchange.path);
    if (path === undefined) {
      endOnClose(stream, tally);
      respond(stream, tally, { ':status': 400, 'content-type': 'text/plain' }, { endStream: false });
      endWith(stream, tally, 'Bad Request');
      return;
    }
    const decision = gate.decide({
      method: tally.exchange.method,
      path,
      host,
      headers: mergeHeaders(Object.entries(headers).filter((e): e is [string, string] => !e[0].startsWith(':') && typeof e[1] === 'string')),
    });
    tally.exchange.decision = decision;
    if (!decision.allowed) return deny(stream, headers, tally);
    // A repeated field goes on as separate fields (gRPC metadata changes meaning when joined).
    forward(stream, fromRaw(rawHeaders), (flags & NGHTTP2_FLAG_END_STREAM) !== 0, toPod(), tally);
  });
  server.emit('connection', client);
  return () => {
    setTimeout(() => {
      session?.destroy();
      client.destroy();
    }, graceMs).unref();
  };
}

const isGrpc = (headers: http2.IncomingHttpHeaders): boolean => String(headers['content-type'] ?? '').startsWith('application/grpc');

/** The exchange ends with the stream: reset by the source (DC), or after the pod failed (UR). */
function endOnClose(stream: http2.ServerHttp2Stream, tally: ExchangeTally, podFailed = () => false): void {
  stream.once('close', () => tally.end(podFailed() ? 'UR' : stream.rstCode === NGHTTP2_NO_ERROR ? '-' : 'DC'));
}

/** Sends a response head and notes its status (and the gRPC status of a trailers-only answer). */
function respond(stream: http2.ServerHttp2Stream, tally: ExchangeTally, head: http2.OutgoingHttpHeaders, opts: { endStream: boolean; waitForTrailers?: boolean }): void {
  tally.exchange.status = Number(head[':status']);
  if (opts.endStream) noteGrpcStatus(tally, head);
  stream.respond(head, { ...opts, ...NO_DATE });
}

/** A local answer's body. */
function endWith(stream: http2.ServerHttp2Stream, tally: ExchangeTally, body: string): void {
  tally.exchange.responseBytes = Buffer.byteLength(body);
  stream.end(body);
}

function noteGrpcStatus(tally: ExchangeTally, fields: http2.OutgoingHttpHeaders): void {
  const v = fields['grpc-status'];
  if (tally.exchange.grpc && v !== undefined) tally.exchange.grpcStatus = Number(Array.isArray(v) ? v[0] : v);
}

function deny(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, tally: ExchangeTally): void {
  endOnClose(stream, tally);
  if (isGrpc(headers)) {
    // Trailers-only gRPC answer: PERMISSION_DENIED.
    respond(stream, tally, { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': DENIED_BODY }, { endStream: true });
    return;
  }
  respond(stream, tally, { ':status': 403, 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(DENIED_BODY)) }, { endStream: false });
  endWith(stream, tally, DENIED_BODY);
}

function forward(stream: http2.ServerHttp2Stream, headers: HeaderMap, ended: boolean, session: http2.ClientHttp2Session, tally: ExchangeTally): void {
  let up: http2.ClientHttp2Stream;
  let podFailed = false;
  endOnClose(stream, tally, () => podFailed);
  try {
    up = session.request({ ...headers }, { endStream: ended, waitForTrailers: !ended });
  } catch {
    // The pod's connection is closing: the source may retry this stream elsewhere.
    podFailed = true;
    stream.close(NGHTTP2_REFUSED_STREAM);
    return;
  }
  up.on('error', () => {});
  let requestTrailers: http2.IncomingHttpHeaders = {};
  let responseTrailers: http2.IncomingHttpHeaders = {};
  stream.on('trailers', (t: http2.IncomingHttpHeaders) => (requestTrailers = t));
  up.on('wantTrailers', () => up.sendTrailers(requestTrailers));
  if (!ended) stream.pipe(up);

  // 1xx (e.g. 100 Continue) as they come; then the final head, body and trailers.
  up.on('headers', (h: http2.IncomingHttpHeaders) => stream.additionalHeaders(h));
  up.on('response', (h: http2.IncomingHttpHeaders, flags: number) => {
    if (stream.destroyed) return;
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    respond(stream, tally, h, { endStream, waitForTrailers: !endStream });
    if (!endStream) up.pipe(stream);
  });
  up.on('data', (chunk: Buffer) => (tally.exchange.responseBytes += chunk.length));
  up.on('trailers', (t: http2.IncomingHttpHeaders) => {
    responseTrailers = t;
    noteGrpcStatus(tally, t);
  });
  stream.on('wantTrailers', () => stream.sendTrailers(responseTrailers));

  // A reset on either side is a reset on the other; the pod failing before an answer is a 503.
  up.once('close', () => {
    if (stream.destroyed || stream.closed) return;
    if (!stream.headersSent) {
      podFailed = true;
      respond(stream, tally, { ':status': 503, 'content-type': 'text/plain' }, { endStream: false });
      endWith(stream, tally, 'upstream connect error or disconnect/reset before headers');
    } else if (!up.readableEnded || up.rstCode) {
      podFailed = true;
      stream.close(up.rstCode || NGHTTP2_INTERNAL_ERROR);
    }
  });
  stream.once('close', () => {
    if (!up.closed && !up.destroyed) up.close(stream.rstCode || NGHTTP2_CANCEL);
  });
}
