// One HTTP/1.1 upstream connection of the L7 proxy (an HBONE tunnel or an in-process inbound
// stream): it writes each request's head and body itself and frames the response with the
// same framer as the inbound filter, so it knows exactly when an exchange has ended. It is
// offered for another request only when both the request was written whole and the response
// read whole, once; anything else (an error, a cancel, a short or long body, stray bytes, a
// close) ends the connection. A reused connection can never carry one request's answer to
// another.
import { Readable, type Duplex } from 'node:stream';
import { endToEnd, type HeaderMap } from '../../http/headers.js';
import { H1Error, H1Framer, parseResponseHead, responseBody, tokens, type Headers, type ResponseHead } from '../../http/h1-framing.js';
import type { BodySink } from './request-body.js';
import { UpstreamError, type UpstreamRequest, type UpstreamResponse } from './upstream.js';

/** Methods whose empty body is sent without a Content-Length, as Node's client does. */
const NO_BODY_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

export interface H1Owner {
  /** The exchange ended cleanly and the connection may carry another. */
  idle(conn: H1Connection): void;
  /** The connection is gone. */
  closed(conn: H1Connection): void;
}

export class H1Connection {
  readonly #stream: Duplex;
  readonly #owner: H1Owner;
  readonly #framer = new H1Framer(parseResponseHead, (h: ResponseHead) => responseBody(h, this.#exchange?.method ?? 'GET'));
  #exchange: Exchange | undefined;
  #closed = false;
  uses = 0;
  idleTimer: NodeJS.Timeout | undefined;
  idleTimeoutMs = 0;

  constructor(stream: Duplex, owner: H1Owner) {
    this.#stream = stream;
    this.#owner = owner;
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('end', () => this.#onEnd());
    stream.on('error', () => {});
    stream.on('close', () => this.#onClose());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts one exchange; the connection must be idle. `last`: ask the upstream to close after it. */
  exchange(req: UpstreamRequest, last: boolean): Exchange {
    const ex = new Exchange(this, req.method);
    this.#exchange = ex;
    this.uses += 1;
    let head: string;
    try {
      head = requestHead(req, ex, last);
    } catch (err) {
      this.destroy(new UpstreamError('reset', (err as Error).message, 'UR'));
      return ex;
    }
    ex.keepAlive = !last;
    this.#stream.write(head, 'latin1');
    if (ex.framing === 'none') ex.requestDone = true;
    else req.body.attach(ex);
    return ex;
  }

  /** Ends the connection; an exchange in flight fails with `error`. */
  destroy(error?: UpstreamError): void {
    const ex = this.#exchange;
    if (ex && error) ex.fail(error);
    this.#stream.destroy();
  }

  write(chunk: Buffer): boolean {
    return this.#stream.write(chunk);
  }

  onDrain(fn: () => void, on: boolean): void {
    if (on) this.#stream.on('drain', fn);
    else this.#stream.off('drain', fn);
  }

  resume(): void {
    this.#stream.resume();
  }

  /** Called by the exchange whenever one of its halves completes. */
  settle(ex: Exchange): void {
    if (this.#exchange !== ex || !ex.requestDone || !ex.responseDone) return;
    this.#exchange = undefined;
    if (!ex.keepAlive || this.#closed) return this.destroy();
    // A body read to its end asks for no more: the stream may still be paused from it.
    this.#stream.resume();
    this.#owner.idle(this);
  }

  #onData(chunk: Buffer): void {
    const ex = this.#exchange;
    if (!ex || ex.responseDone) {
      // Bytes nobody asked for: this connection's framing can no longer be trusted.
      return this.destroy();
    }
    this.#framer.push(chunk);
    try {
      for (let ev = this.#framer.next(); ev; ev = this.#framer.next()) {
        if (ev.type === 'head') {
          if (ev.head.status < 200) {
            if (ev.head.status === 101) throw new H1Error(400, 'the upstream switched protocols unasked');
            ex.interim = true;
            continue;
          }
          ex.respond(ev.head);
        } else if (ev.type === 'body') {
          if (ev.content && !ex.push(ev.raw)) this.#stream.pause();
        } else if (ex.interim) ex.interim = false;
        else {
          // Bytes past the end of the answer belong to no request: never to the next one.
          if (this.#framer.takeRest().length > 0) ex.keepAlive = false;
          ex.finishResponse(this.#framer.trailers);
          break;
        }
      }
    } catch (err) {
      this.destroy(new UpstreamError('reset', `upstream sent a malformed response: ${(err as Error).message}`, 'UR'));
    }
  }

  #onEnd(): void {
    const ex = this.#exchange;
    // A body delimited by the close is whole now; the connection is not reusable either way.
    if (ex && ex.responded && !ex.responseDone && this.#framer.closeDelimited) {
      ex.keepAlive = false;
      ex.finishResponse([]);
    }
    this.destroy(new UpstreamError('reset', 'upstream closed the connection', 'UR'));
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.idleTimer);
    this.#exchange?.fail(new UpstreamError('reset', 'upstream connection closed', 'UR'));
    this.#exchange = undefined;
    this.#owner.closed(this);
  }
}

/** One request and its response on an H1Connection; the request body's sink. */
export class Exchange implements BodySink {
  readonly #conn: H1Connection;
  readonly method: string;
  framing: 'none' | 'length' | 'chunked' = 'none';
  /** Body bytes still owed under Content-Length framing. */
  left = 0;
  requestDone = false;
  responseDone = false;
  responded = false;
  interim = false;
  keepAlive = true;
  #failed = false;
  #body: Readable | undefined;
  #trailers: HeaderMap = {};
  readonly response: Promise<UpstreamResponse>;
  #resolve!: (r: UpstreamResponse) => void;
  #reject!: (e: UpstreamError) => void;

  constructor(conn: H1Connection, method: string) {
    this.#conn = conn;
    this.method = method;
    this.response = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.response.catch(() => {});
  }

  get live(): boolean {
    return !this.#failed && !(this.requestDone && this.responseDone);
  }

  write(chunk: Buffer): boolean {
    if (!this.live || this.requestDone) return true;
    if (this.framing === 'length') {
      if (chunk.length > this.left) {
        this.#conn.destroy(new UpstreamError('reset', 'request body longer than its Content-Length', 'DC'));
        return true;
      }
      this.left -= chunk.length;
      return this.#conn.write(chunk);
    }
    if (chunk.length === 0) return true;
    return this.#conn.write(Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, CRLF]));
  }

  end(): void {
    if (!this.live || this.requestDone) return;
    if (this.framing === 'length' && this.left !== 0) {
      this.#conn.destroy(new UpstreamError('reset', 'request body shorter than its Content-Length', 'DC'));
      return;
    }
    if (this.framing === 'chunked') this.#conn.write(LAST_CHUNK);
    this.requestDone = true;
    this.#conn.settle(this);
  }

  on(_event: 'drain', fn: () => void): this {
    this.#conn.onDrain(fn, true);
    return this;
  }

  off(_event: 'drain', fn: () => void): this {
    this.#conn.onDrain(fn, false);
    return this;
  }

  respond(head: ResponseHead): void {
    this.responded = true;
    if (head.version === '1.0' || tokens(head.headers, 'connection').includes('close')) this.keepAlive = false;
    const conn = this.#conn;
    this.#body = new Readable({
      read: () => conn.resume(),
      // A body its reader gave up on leaves the connection mid-response: it cannot be reused.
      destroy: (err, cb) => {
        if (!this.responseDone) conn.destroy();
        cb(err);
      },
    });
    // Readers see a reset through 'close' without an end (and errored); none must crash for it.
    this.#body.on('error', () => {});
    const bodyKind = responseBody(head, this.method).kind;
    this.#resolve({
      status: head.status,
      headers: endToEnd(headerMap(head.headers)),
      body: this.#body,
      endStream: bodyKind === 'none',
      trailers: () => this.#trailers,
    });
  }

  push(raw: Buffer): boolean {
    return this.#body?.push(raw) ?? true;
  }

  finishResponse(trailers: Headers): void {
    this.#trailers = endToEnd(headerMap(trailers));
    this.responseDone = true;
    this.#body?.push(null);
    this.#conn.settle(this);
  }

  /** The exchange is over without a clean end. */
  fail(error: UpstreamError): void {
    if (this.#failed || (this.requestDone && this.responseDone)) return;
    this.#failed = true;
    if (!this.responded) this.#reject(error);
    else if (!this.responseDone) this.#body?.destroy(Object.assign(new Error(error.message), { code: 'ECONNRESET' }));
  }

  /** Gives the exchange up (per-try timeout, client gone): the connection goes with it. */
  cancel(error: UpstreamError): void {
    if (!this.live) return;
    this.#conn.destroy(error);
  }
}

function requestHead(req: UpstreamRequest, ex: Exchange, last: boolean): string {
  let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${req.authority}\r\n`;
  if (BAD_VALUE.test(req.path) || req.path.includes(' ') || BAD_VALUE.test(req.authority)) throw new Error('invalid request target or authority');
  let length: string | undefined;
  for (const name in req.headers) {
    const value = req.headers[name]!;
    // Node's server already answered 100-continue to the client.
    if (name === 'expect') continue;
    if (name === 'content-length') {
      length = Array.isArray(value) ? value[0] : value;
      continue;
    }
    if (!TOKEN.test(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`);
    for (const v of Array.isArray(value) ? value : [value]) {
      if (BAD_VALUE.test(v)) throw new Error(`invalid value for header ${name}`);
      head += `${name}: ${v}\r\n`;
    }
  }
  if (req.body.empty) {
    if (!NO_BODY_METHODS.has(req.method) || (length !== undefined && length !== '0')) head += 'content-length: 0\r\n';
  } else if (length !== undefined && /^\d{1,15}$/.test(length)) {
    ex.framing = 'length';
    ex.left = Number(length);
    head += `content-length: ${length}\r\n`;
  } else {
    ex.framing = 'chunked';
    head += 'transfer-encoding: chunked\r\n';
  }
  if (ex.framing === 'length' && ex.left === 0) ex.framing = 'none';
  if (last) head += 'connection: close\r\n';
  return `${head}\r\n`;
}

function headerMap(headers: Headers): HeaderMap {
  const out: HeaderMap = Object.create(null) as HeaderMap;
  for (const [name, value] of headers) {
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  return out;
}
