// The client side of one proxied request, HTTP/1.1 or HTTP/2, behind one small interface the
// L7 pipeline uses: what was asked, the body, and how to answer — with the upstream's
// response (body and trailers streamed through) or with a local reply, which for gRPC is a
// trailers-only response carrying grpc-status, and which after the head has gone out becomes
// gRPC trailers or a reset.
import http2 from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { endToEnd, fromRaw, type HeaderMap } from '../../http/headers.js';
import { encodeGrpcMessage, grpcCodeForHttp } from '../../http/grpc-status.js';
import type { LocalReply } from './forwarder.js';
import type { UpstreamResponse } from './upstream.js';
import type { ResponseFlag } from '../../state/outcome.js';

const { NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL } = http2.constants;

export interface Downstream {
  protocol: 'h1' | 'h2';
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  /** End-to-end request headers (no pseudo-headers, no hop-by-hop, no host). */
  headers: HeaderMap;
  grpc: boolean;
  body: Readable;
  /** The request had no body at all. */
  bodyEmpty: boolean;
  /** Aborted when the client goes away before the answer is complete. */
  gone: AbortSignal;
  headSent(): boolean;
  reply(local: LocalReply): void;
  /** Streams the upstream answer with `headers` in place of its own; resolves when over. */
  send(response: UpstreamResponse, headers: HeaderMap): Promise<void>;
  /** Ends an answer already under way: gRPC trailers with the status, else a reset. */
  abort(local: LocalReply): void;
  /** What the client was answered so far, for telemetry. */
  outcome(): Outcome;
}

export interface Outcome {
  /** The HTTP status sent; 0 when no head went out. */
  status: number;
  grpcStatus?: number;
  /** Response body bytes sent. */
  bytes: number;
  /** The response flag of a local reply or abort, else '-'. */
  flag: ResponseFlag;
}

function grpcStatusOf(headers: HeaderMap | undefined): number | undefined {
  const v = headers?.['grpc-status'];
  return v === undefined ? undefined : Number(Array.isArray(v) ? v[0] : v);
}

const TEXT = 'text/plain; charset=utf-8';

/**
 * Why an HTTP/1.1 request must be answered 400 before anything else (RFC 9112 §3.2): no Host
 * in HTTP/1.1, or more than one. Node's own check answers 400 but still serves a request
 * pipelined behind it, so the proxy checks itself and closes the connection.
 */
export function malformedH1(req: IncomingMessage): string | undefined {
  const hosts = req.headersDistinct.host?.length ?? 0;
  if (hosts > 1) return 'more than one Host header';
  if (hosts === 0 && req.httpVersion === '1.1') return 'missing Host header';
  return undefined;
}

/** Path and authority; an absolute-form target (`GET http://echo/x`) gives both (RFC 9112 §3.2.2). */
function requestTarget(req: IncomingMessage): { path: string; authority: string } {
  const url = req.url ?? '/';
  const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
  if (!absolute) return { path: url, authority: req.headers.host ?? '' };
  const rest = absolute[2] ?? '';
  return { path: rest.startsWith('/') ? rest : `/${rest}`, authority: absolute[1] ?? '' };
}

export function h1Downstream(req: IncomingMessage, res: ServerResponse): Downstream {
  const gone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  const bodyEmpty = req.headers['transfer-encoding'] === undefined && Number(req.headers['content-length'] ?? 0) === 0;
  if (bodyEmpty) req.resume();
  const seen: Outcome = { status: 0, bytes: 0, flag: '-' };
  const target = requestTarget(req);
  return {
    protocol: 'h1',
    method: req.method ?? 'GET',
    path: target.path,
    authority: target.authority,
    headers: endToEnd(fromRaw(req.rawHeaders)),
    grpc: false,
    body: req,
    bodyEmpty,
    gone: gone.signal,
    headSent: () => res.headersSent,
    reply(local) {
      if (res.headersSent || res.destroyed) return;
      const body = local.message;
      res.writeHead(local.status, { 'content-type': TEXT, 'content-length': Buffer.byteLength(body), ...local.headers });
      res.end(body);
      Object.assign(seen, { status: local.status, bytes: Buffer.byteLength(body), flag: local.flag });
    },
    send(response, headers) {
      return new Promise((resolve) => {
        if (res.destroyed) {
          response.body.destroy();
          return resolve();
        }
        res.writeHead(response.status, headers);
        seen.status = response.status;
        response.body.on('data', (chunk: Buffer) => (seen.bytes += chunk.length));
        response.body.pipe(res);
        response.body.once('error', () => res.destroy());
        response.body.once('close', () => {
          if (!response.body.readableEnded) res.destroy();
        });
        res.once('close', () => {
          if (!response.body.readableEnded) response.body.destroy();
          resolve();
        });
      });
    },
    abort(local) {
      seen.flag = local.flag;
      res.destroy();
    },
    outcome: () => seen,
  };
}

export function h2Downstream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]): Downstream {
  const gone = new AbortController();
  stream.on('error', () => {});
  stream.once('close', () => {
    if (!stream.writableFinished || stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) gone.abort();
  });
  const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
  let failure: HeaderMap | undefined;
  let current: UpstreamResponse | undefined;
  const seen: Outcome = { status: 0, bytes: 0, flag: '-' };
  const open = () => !stream.destroyed && !stream.closed;
  const grpcTrailers = (local: LocalReply): HeaderMap => ({
    'grpc-status': String(local.grpcStatus ?? grpcCodeForHttp(local.status)),
    'grpc-message': encodeGrpcMessage(local.message),
  });
  return {
    protocol: 'h2',
    method: String(headers[':method'] ?? 'GET'),
    path: String(headers[':path'] ?? '/'),
    authority: String(headers[':authority'] ?? headers.host ?? ''),
    headers: endToEnd(fromRaw(rawHeaders)),
    grpc,
    body: stream,
    bodyEmpty: (flags & NGHTTP2_FLAG_END_STREAM) !== 0,
    gone: gone.signal,
    headSent: () => stream.headersSent,
    reply(local) {
      if (!open() || stream.headersSent) return;
      seen.flag = local.flag;
      if (grpc) {
        const trailers = grpcTrailers(local);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...trailers, ...local.headers }, { endStream: true });
        Object.assign(seen, { status: 200, grpcStatus: grpcStatusOf(trailers) });
        return;
      }
      const body = local.message;
      stream.respond({ ':status': local.status, 'content-type': TEXT, 'content-length': Buffer.byteLength(body), ...local.headers });
      stream.end(body);
      Object.assign(seen, { status: local.status, bytes: Buffer.byteLength(body) });
    },
    send(response, out) {
      return new Promise((resolve) => {
        stream.once('close', () => resolve());
        if (!open()) {
          response.body.destroy();
          return;
        }
        seen.status = response.status;
        if (response.endStream) {
          stream.respond({ ':status': response.status, ...out }, { endStream: true });
          seen.grpcStatus = grpcStatusOf(out);
          return;
        }
        current = response;
        stream.respond({ ':status': response.status, ...out }, { waitForTrailers: true });
        stream.once('wantTrailers', () => {
          // Without trailers Node sends an empty DATA frame with END_STREAM; close() would
          // send RST_STREAM instead, which clients may take as a failed response.
          const trailers = failure ?? response.trailers();
          seen.grpcStatus = grpcStatusOf(trailers);
          stream.sendTrailers(trailers);
        });
        response.body.on('data', (chunk: Buffer) => (seen.bytes += chunk.length));
        response.body.pipe(stream, { end: false });
        response.body.once('end', () => stream.end());
        response.body.once('close', () => {
          if (response.body.readableEnded || !open() || failure) return;
          seen.flag = 'UR';
          if (grpc) {
            failure = grpcTrailers({ status: 503, flag: 'UR', message: 'upstream reset the call' });
            stream.end();
          } else stream.close(NGHTTP2_INTERNAL_ERROR);
        });
        stream.once('close', () => {
          if (!response.body.readableEnded) response.body.destroy();
        });
      });
    },
    abort(local) {
      seen.flag = local.flag;
      if (!open()) return;
      if (grpc && stream.headersSent) {
        failure = grpcTrailers(local);
        current?.body.unpipe(stream);
        current?.body.destroy();
        stream.end();
      } else stream.close(grpc ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
    },
    outcome: () => seen,
  };
}
