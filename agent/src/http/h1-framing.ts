// HTTP/1.x message framing for the inbound L7 filter: where each request or response head and
// body starts and ends in the byte stream, nothing more. The filter forwards the raw bytes it
// is handed, so what reaches the pod is exactly what the source sent. Strict where leniency
// allows request smuggling (RFC 9112 §6.3, §11.2): CRLF only, no obs-fold, no space before
// the colon, Transfer-Encoding with Content-Length rejected.

/** Header names lower case, in arrival order. */
export type Headers = Array<[name: string, value: string]>;

export interface RequestHead {
  method: string;
  target: string;
  version: '1.0' | '1.1';
  headers: Headers;
}

export interface ResponseHead {
  status: number;
  version: '1.0' | '1.1';
  headers: Headers;
}

export type Body = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'until-close' };

/** `content` is false for chunked framing (sizes, CRLFs, trailers): telemetry counts the rest. */
export type FrameEvent<H> = { type: 'head'; head: H; raw: Buffer } | { type: 'body'; raw: Buffer; content: boolean } | { type: 'end' };

/** A malformed message: the status to answer with (400, 431) and why. */
export class H1Error extends Error {
  constructor(
    readonly status: 400 | 431,
    message: string,
  ) {
    super(message);
  }
}

/** Node's default --max-http-header-size. */
const MAX_HEAD = 16 * 1024;
const MAX_LINE = 4 * 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

type State =
  | { at: 'head' }
  | { at: 'data'; left: number; chunked: boolean }
  | { at: 'chunk-size' }
  | { at: 'chunk-end' }
  | { at: 'trailers' }
  | { at: 'until-close' }
  | { at: 'complete' };

/** Pull parser: `push` bytes in, take events out with `next` until it returns undefined. */
export class H1Framer<H> {
  readonly #parseHead: (lines: string[]) => H;
  readonly #bodyOf: (head: H) => Body;
  #buf: Buffer = Buffer.alloc(0);
  #state: State = { at: 'head' };
  #trailers: Headers = [];

  constructor(parseHead: (lines: string[]) => H, bodyOf: (head: H) => Body) {
    this.#parseHead = parseHead;
    this.#bodyOf = bodyOf;
  }

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
  }

  /** Bytes not parsed yet; the framer is empty afterwards. */
  takeRest(): Buffer {
    const rest = this.#buf;
    this.#buf = Buffer.alloc(0);
    return rest;
  }

  /** The trailer fields of the last chunked message, once its 'end' was taken. */
  get trailers(): Headers {
    return this.#trailers;
  }

  /** In a body that the connection's close ends (a response with neither length nor chunks). */
  get closeDelimited(): boolean {
    return this.#state.at === 'until-close';
  }

  /** Throws H1Error on a malformed message. */
  next(): FrameEvent<H> | undefined {
    const s = this.#state;
    switch (s.at) {
      case 'head':
        return this.#head();
      case 'data': {
        if (this.#buf.length === 0) return undefined;
        const raw = this.#take(Math.min(s.left, this.#buf.length));
        s.left -= raw.length;
        if (s.left === 0) this.#state = s.chunked ? { at: 'chunk-end' } : { at: 'complete' };
        return { type: 'body', raw, content: true };
      }
      case 'chunk-size': {
        const line = this.#line();
        if (!line) return undefined;
        const size = /^([0-9a-fA-F]{1,8})(;.*)?$/.exec(line.text)?.[1];
        if (size === undefined) throw new H1Error(400, `bad chunk size line ${JSON.stringify(line.text.slice(0, 40))}`);
        const left = parseInt(size, 16);
        this.#state = left === 0 ? { at: 'trailers' } : { at: 'data', left, chunked: true };
        return { type: 'body', raw: line.raw, content: false };
      }
      case 'chunk-end': {
        if (this.#buf.length < 2) return undefined;
        if (!this.#buf.subarray(0, 2).equals(CRLF)) throw new H1Error(400, 'chunk data not followed by CRLF');
        this.#state = { at: 'chunk-size' };
        return { type: 'body', raw: this.#take(2), content: false };
      }
      case 'trailers': {
        const line = this.#line();
        if (!line) return undefined;
        if (line.text === '') this.#state = { at: 'complete' };
        else this.#trailers.push(...headers([line.text]));
        return { type: 'body', raw: line.raw, content: false };
      }
      case 'until-close':
        return this.#buf.length === 0 ? undefined : { type: 'body', raw: this.#take(this.#buf.length), content: true };
      case 'complete':
        this.#state = { at: 'head' };
        return { type: 'end' };
    }
  }

  #head(): FrameEvent<H> | undefined {
    // RFC 9112 §2.2: ignore empty lines before a request line.
    while (this.#buf.subarray(0, 2).equals(CRLF)) this.#take(2);
    const end = this.#buf.indexOf(HEAD_END);
    if (end < 0) {
      if (this.#buf.length > MAX_HEAD) throw new H1Error(431, `head larger than ${MAX_HEAD} bytes`);
      return undefined;
    }
    const raw = this.#take(end + HEAD_END.length);
    this.#trailers = [];
    const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
    if (lines.some((l) => l.includes('\n') || l.includes('\r'))) throw new H1Error(400, 'bare CR or LF in the head');
    const head = this.#parseHead(lines);
    const body = this.#bodyOf(head);
    this.#state =
      body.kind === 'none' || (body.kind === 'length' && body.length === 0)
        ? { at: 'complete' }
        : body.kind === 'length'
          ? { at: 'data', left: body.length, chunked: false }
          : body.kind === 'chunked'
            ? { at: 'chunk-size' }
            : { at: 'until-close' };
    return { type: 'head', head, raw };
  }

  #line(): { text: string; raw: Buffer } | undefined {
    const eol = this.#buf.indexOf(CRLF);
    if (eol < 0) {
      if (this.#buf.length > MAX_LINE) throw new H1Error(400, 'chunk line too long');
      return undefined;
    }
    const raw = this.#take(eol + 2);
    return { text: raw.subarray(0, eol).toString('latin1'), raw };
  }

  #take(n: number): Buffer {
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

/** Control characters a field value may not hold (RFC 9110 §5.5: only HTAB among them). */
const CTL = /[\0-\x08\x0a-\x1f\x7f]/;

function headers(lines: string[]): Headers {
  return lines.map((line) => {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) throw new H1Error(400, `malformed header line ${JSON.stringify(line.slice(0, 40))}`);
    const value = line.slice(colon + 1).trim();
    if (CTL.test(value)) throw new H1Error(400, `control character in the value of header ${name}`);
    return [name.toLowerCase(), value];
  });
}

export function parseRequestHead(lines: string[]): RequestHead {
  // A target is visible ASCII only (RFC 9112 §3.2): no NUL, no control character, no space.
  const m = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/.exec(lines[0] ?? '');
  if (!m) throw new H1Error(400, `malformed request line ${JSON.stringify((lines[0] ?? '').slice(0, 60))}`);
  return { method: m[1]!, target: m[2]!, version: m[3] === '0' ? '1.0' : '1.1', headers: headers(lines.slice(1)) };
}

export function parseResponseHead(lines: string[]): ResponseHead {
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) throw new H1Error(400, `malformed status line ${JSON.stringify((lines[0] ?? '').slice(0, 60))}`);
  return { status: Number(m[2]), version: m[1] === '0' ? '1.0' : '1.1', headers: headers(lines.slice(1)) };
}

export function values(h: Headers, name: string): string[] {
  return h.filter(([n]) => n === name).map(([, v]) => v);
}

/** Comma-separated list values of a header, lower case (Connection, Transfer-Encoding, Upgrade). */
export function tokens(h: Headers, name: string): string[] {
  return values(h, name)
    .flatMap((v) => v.split(','))
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

/** RFC 9112 §6: how a request's body is delimited. */
export function requestBody(head: RequestHead): Body {
  const te = tokens(head.headers, 'transfer-encoding');
  const cl = values(head.headers, 'content-length');
  if (te.length > 0) {
    if (cl.length > 0) throw new H1Error(400, 'both Transfer-Encoding and Content-Length');
    if (te[te.length - 1] !== 'chunked') throw new H1Error(400, 'Transfer-Encoding of a request must end with chunked');
    return { kind: 'chunked' };
  }
  return contentLength(cl) ?? { kind: 'none' };
}

/** RFC 9112 §6.3 for a response to `method`; 1xx, 204, 304 and HEAD answers have no body. */
export function responseBody(head: ResponseHead, method: string): Body {
  if (head.status < 200 || head.status === 204 || head.status === 304 || method === 'HEAD') return { kind: 'none' };
  if (method === 'CONNECT' && head.status < 300) return { kind: 'none' };
  const te = tokens(head.headers, 'transfer-encoding');
  if (te.length > 0) return te[te.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'until-close' };
  return contentLength(values(head.headers, 'content-length')) ?? { kind: 'until-close' };
}

function contentLength(cl: string[]): Body | undefined {
  if (cl.length === 0) return undefined;
  const all = cl.flatMap((v) => v.split(',')).map((v) => v.trim());
  if (!all.every((v) => /^\d{1,15}$/.test(v)) || new Set(all).size !== 1) throw new H1Error(400, `bad Content-Length ${JSON.stringify(cl.join(','))}`);
  return { kind: 'length', length: Number(all[0]) };
}
