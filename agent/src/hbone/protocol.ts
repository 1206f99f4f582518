// HBONE wire details shared by the :15008 server and the client pool: the CONNECT request's
// :authority and `forwarded` header, the Proxy-Status header that explains a refusal, and the
// Duplex that carries one TCP connection (bytes, FIN, RST) over one HTTP/2 CONNECT stream.
// A tunnel that the source's L7 proxy opens for its HTTP requests says so on the CONNECT with
// `x-nodemesh-protocol: http/1.1` or `h2` (ALPN ids of the inner protocol), so the destination
// serves it with its HTTP filters (per-request telemetry, authorization) without detecting
// anything; a tunnel without the header carries opaque TCP and stays a byte relay.
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { NodemeshError, type ErrorCode } from '../errors.js';
import type { HttpProtocol } from '../http/detect.js';

export const HBONE_PORT = 15008;
export const HBONE_ALPN = 'h2';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_CONNECT_ERROR } = http2.constants;

export interface HostPort {
  ip: string;
  port: number;
}

/** The CONNECT request header naming the inner protocol of an L7 proxy's tunnel. */
export const PROTOCOL_HEADER = 'x-nodemesh-protocol';
const PROTOCOL_IDS: Record<HttpProtocol, string> = { h1: 'http/1.1', h2: 'h2' };

export const formatProtocol = (p: HttpProtocol): string => PROTOCOL_IDS[p];

/** The declared inner protocol; an absent or unknown value is opaque TCP. */
export function parseProtocol(header: string | string[] | undefined): HttpProtocol | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  return value === 'http/1.1' ? 'h1' : value === 'h2' ? 'h2' : undefined;
}

/** A failed HBONE connect: `status` is the HTTP status when the server answered at all. */
export class HboneError extends NodemeshError {
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'HboneError';
    this.status = status;
  }
}

export function formatAuthority({ ip, port }: HostPort): string {
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `ip:port` or `[ipv6]:port` — HBONE targets are pod addresses, never host names. */
export function parseAuthority(authority: string | undefined): HostPort | undefined {
  if (!authority) return undefined;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(authority);
  if (!m) return undefined;
  const ip = m[1] ?? m[2] ?? '';
  const family = m[1] !== undefined ? 6 : 4;
  const port = Number(m[3]);
  if (net.isIP(ip) !== family || port < 1 || port > 65535) return undefined;
  return { ip, port };
}

/** RFC 7239: IPv6 addresses are quoted and bracketed. */
export function formatForwarded(ip: string): string {
  return net.isIPv6(ip) ? `for="[${ip}]"` : `for=${ip}`;
}

/** The `for=` address of the first (closest to the client) element, if it is an IP. */
export function parseForwardedFor(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const first = value.split(',')[0] ?? '';
  for (const pair of first.split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
    let v = pair.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(v);
    if (bracketed) v = bracketed[1] ?? '';
    else if (/^[0-9.]+:\d+$/.test(v)) v = v.slice(0, v.lastIndexOf(':'));
    // A zone id (fe80::1%eth0) names an interface of the sender's node: no source address here.
    return net.isIP(v) && !v.includes('%') ? v : undefined;
  }
  return undefined;
}

// RFC 9209 Proxy-Status: the standard place for an intermediary to say why it refused.
const proxyStatusError: Record<number, string> = {
  400: 'http_request_error',
  401: 'http_request_denied',
  403: 'http_request_denied',
  405: 'http_request_error',
  503: 'connection_refused',
  504: 'connection_timeout',
};

export function formatProxyStatus(status: number, details: string): string {
  const error = proxyStatusError[status] ?? 'proxy_internal_error';
  // sf-string: printable ASCII only, with `"` and `\` escaped.
  const safe = details.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, (c) => `\\${c}`);
  return `nodemesh; error=${error}; details="${safe}"`;
}

export function parseProxyStatusDetails(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header.join(', ') : header;
  if (!value) return undefined;
  const m = /details="((?:[^"\\]|\\.)*)"/.exec(value);
  if (m) return (m[1] ?? '').replace(/\\(.)/g, '$1');
  return /error=([A-Za-z0-9_]+)/.exec(value)?.[1];
}

export function resetError(message: string, http2Code?: number): NodeJS.ErrnoException {
  const name = http2Code === undefined ? '' : ` (${rstCodeName(http2Code)})`;
  return Object.assign(new Error(`${message}${name}`), { code: 'ECONNRESET' });
}

// HTTP/2 error codes 0x0-0xd in order (RFC 9113 §7).
const rstCodeNames = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED',
  'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
];

export function rstCodeName(code: number): string {
  return rstCodeNames[code] ?? `error code ${code}`;
}

/**
 * One tunnelled TCP connection over an HTTP/2 CONNECT stream whose 200 was exchanged:
 * write = DATA, end() = END_STREAM (FIN), destroy() / resetAndDestroy() = RST_STREAM; the peer's
 * END_STREAM ends reading, and its RST_STREAM (or a lost session) surfaces as an error with
 * code ECONNRESET, as a reset TCP socket would, so a relay can pass it on as a reset.
 */
export class HboneStream extends Duplex {
  readonly #h2: http2.Http2Stream;
  #remoteEnded = false;
  #reset = false;
  #bytesRead = 0;
  #bytesWritten = 0;

  constructor(h2: http2.Http2Stream) {
    super({ allowHalfOpen: true });
    this.#h2 = h2;
    h2.on('data', (chunk: Buffer) => {
      this.#bytesRead += chunk.length;
      if (!this.push(chunk)) h2.pause();
    });
    h2.on('end', () => {
      // Node also ends the readable side of a stream it destroys on RST_STREAM (rstCode set):
      // that is no END_STREAM, and the close handler reports it as a reset.
      if (h2.rstCode !== undefined && h2.rstCode !== NGHTTP2_NO_ERROR) return;
      this.#remoteEnded = true;
      this.push(null);
    });
    // The close handler decides what the reader sees; a stream error alone says nothing more.
    h2.on('error', () => {});
    h2.on('close', () => {
      if (this.destroyed) return;
      const code = h2.rstCode ?? NGHTTP2_NO_ERROR;
      if (code === NGHTTP2_NO_ERROR && this.#remoteEnded) return;
      this.destroy(resetError('HBONE stream reset by the peer', code));
    });
  }

  get bytesRead(): number {
    return this.#bytesRead;
  }

  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Like net.Socket#resetAndDestroy: the peer sees RST_STREAM(CONNECT_ERROR), i.e. a TCP reset. */
  resetAndDestroy(): this {
    this.#reset = true;
    return this.destroy();
  }

  override _read(): void {
    this.#h2.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#bytesWritten += chunk.length;
    // The callback waits for HTTP/2 flow control, so a slow reader slows the writer.
    this.#h2.write(chunk, (err?: Error | null) => {
      if (err) this.destroy(resetError('HBONE stream closed while writing'));
      callback();
    });
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#h2.end(() => callback());
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const h2 = this.#h2;
    const clean = !err && !this.#reset && this.#remoteEnded && this.writableFinished;
    if (!clean && !h2.closed && !h2.destroyed) {
      // RFC 9113 §8.5: a TCP error on the tunnel is signalled with CONNECT_ERROR; CANCEL is a
      // plain abandon. The peer resets its TCP side either way.
      // Http2Stream#close() ends the writable side first when it is still open, and Node flushes
      // that END_STREAM before the RST_STREAM: the peer would see a FIN, then the reset, and
      // could take truncated data as complete. Marking the side as ending skips that step.
      const state = (h2 as unknown as { _writableState?: { ending: boolean } })._writableState;
      if (state) state.ending = true;
      h2.close(err || this.#reset ? NGHTTP2_CONNECT_ERROR : NGHTTP2_CANCEL);
    }
    callback(err);
  }
}
