// The inbound L7 filter for HTTP/1.x: between the source's bytes and the pod's socket, it
// frames each request, asks the gate, forwards an allowed request's exact bytes and answers a
// denied one itself (403, nothing sent to the pod). Responses are framed too, so a local answer
// goes out in order after the pod's answers to earlier pipelined requests. An accepted Upgrade
// (101) or CONNECT (2xx) ends the filter: the caller relays the rest as bytes. Each request
// is told to the gate once its answer has ended (status, body sizes, decision).
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AuthzHttp } from '../../policy/index.js';
import { DENIED_BODY, ExchangeTally, mergeHeaders, type HttpGate } from './gate.js';
import {
  H1Error,
  H1Framer,
  parseRequestHead,
  parseResponseHead,
  requestBody,
  responseBody,
  tokens,
  values,
  type RequestHead,
} from '../../http/h1-framing.js';
import { normalizePath } from '../../http/normalize-path.js';
import { reset } from '../../transport/reset.js';

export type H1Outcome = 'closed' | 'switched';

type Exchange =
  | { forwarded: true; method: string; switches: boolean; tally: ExchangeTally }
  /** A local answer; one to bytes that could not be framed as a request has no tally. */
  | { forwarded: false; response: Buffer; close: boolean; tally?: ExchangeTally };

/** Pipelined requests held while earlier answers are pending; past this, stop reading. */
const MAX_QUEUED = 64;

/**
 * Serves one connection from `client` (the source's side) to `pod`, starting with the bytes
 * already read. Resolves 'switched' once an upgrade was accepted: both streams are then left to
 * the caller (everything read past the switch already written across), else 'closed'.
 */
export function serveH1(client: Duplex, pod: net.Socket, gate: HttpGate, first: Buffer): Promise<H1Outcome> {
  return new Promise((resolve) => new H1Filter(client, pod, gate, resolve).start(first));
}

class H1Filter {
  readonly #client: Duplex;
  readonly #pod: net.Socket;
  readonly #gate: HttpGate;
  readonly #done: (o: H1Outcome) => void;
  readonly #requests = new H1Framer(parseRequestHead, requestBody);
  readonly #responses = new H1Framer(parseResponseHead, (h) => responseBody(h, this.#awaiting()?.method ?? 'GET'));
  readonly #queue: Exchange[] = [];
  readonly #detach: Array<() => void> = [];
  /** What happens to the body of the request being read. */
  #current: 'forward' | 'drop' | undefined;
  /** The request being read, for its body size. */
  #reading: ExchangeTally | undefined;
  /** A request head read but not yet decided: a malformed one is answered with its tally. */
  #undecided: ExchangeTally | undefined;
  /** A 1xx answer is being relayed: its end is not the exchange's. */
  #interim = false;
  /** An upgrade or CONNECT was forwarded: later bytes may not be HTTP, so wait for its answer. */
  #held = false;
  /** No more requests are read: a closing local answer is queued, or the pod has ended. */
  #closing = false;
  #clientEnded = false;
  #podBlocked = false;
  #clientBlocked = false;
  /** The connection is the caller's now: no more flow control from here. */
  #switched = false;

  constructor(client: Duplex, pod: net.Socket, gate: HttpGate, done: (o: H1Outcome) => void) {
    this.#client = client;
    this.#pod = pod;
    this.#gate = gate;
    this.#done = done;
  }

  start(first: Buffer): void {
    const client = this.#client;
    const pod = this.#pod;
    this.#on(client, 'data', (chunk: Buffer) => {
      this.#requests.push(chunk);
      this.#pumpRequests();
    });
    this.#on(client, 'end', () => {
      this.#clientEnded = true;
      this.#endPodWhenDone();
    });
    this.#on(pod, 'data', (chunk: Buffer) => {
      this.#responses.push(chunk);
      this.#pumpResponses();
    });
    this.#on(pod, 'end', () => this.#onPodEnd());
    // 'close' follows; errors only need a listener so they do not crash the agent.
    this.#on(client, 'error', () => {});
    this.#on(pod, 'error', () => {});
    this.#on(client, 'close', () => {
      this.#cutShort('DC');
      if (client.errored) reset(pod);
      else pod.destroy();
      this.#done('closed');
    });
    this.#on(pod, 'close', () => {
      this.#cutShort('UR');
      // A pod that went away mid-connection is a reset for the source, never a clean end.
      if (!client.writableEnded) client.destroy(pod.errored ?? Object.assign(new Error('pod closed the connection'), { code: 'ECONNRESET' }));
    });
    this.#requests.push(first);
    this.#pumpRequests();
  }

  #pumpRequests(): void {
    try {
      for (let ev = this.#next(); ev; ev = this.#next()) {
        if (ev.type === 'head') this.#onRequest(ev.head, ev.raw);
        else if (ev.type === 'body') {
          if (ev.content && this.#reading) this.#reading.exchange.requestBytes += ev.raw.length;
          if (this.#current === 'forward') this.#toPod(ev.raw);
        } else {
          const last = this.#queue.at(-1);
          if (this.#current === 'forward' && last?.forwarded && last.switches) this.#held = true;
          this.#current = undefined;
          this.#reading = undefined;
        }
      }
    } catch (err) {
      if (!(err instanceof H1Error)) throw err;
      if (this.#current === 'forward') return this.#abortForwarded(err);
      this.#answer(err.status, err.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', err.message, { close: true }, this.#undecided);
      this.#undecided = undefined;
    }
    this.#endPodWhenDone();
    this.#flowClient();
  }

  /**
   * The body of a request already going to the pod cannot be framed (broken chunks): the pod
   * must not act on part of it, so its connection is reset. The source gets the 400 when
   * nothing of this request's answer went out yet and nothing is pending before it; else a reset.
   */
  #abortForwarded(err: H1Error): void {
    const ex = this.#queue.at(-1);
    this.#current = undefined;
    this.#reading = undefined;
    // Reset before anything ends the pod's side: after end() a socket cannot be reset.
    reset(this.#pod);
    if (this.#queue.length === 1 && ex?.forwarded && ex.tally.exchange.status === 0) {
      this.#queue.pop();
      this.#answer(400, 'Bad Request', err.message, { close: true }, ex.tally);
      return;
    }
    this.#client.destroy(Object.assign(new Error(`request body: ${err.message}`), { code: 'ECONNRESET' }));
  }

  #next() {
    return this.#held || this.#closing ? undefined : this.#requests.next();
  }

  #onRequest(head: RequestHead, raw: Buffer): void {
    const tally = new ExchangeTally(this.#gate, {
      httpVersion: '1.1',
      grpc: false,
      method: head.method,
      authority: values(head.headers, 'host')[0] ?? '',
      path: head.target,
      requestId: values(head.headers, 'x-request-id')[0],
      traceparent: values(head.headers, 'traceparent')[0],
    });
    this.#undecided = tally;
    const http = attributes(head);
    const decision = this.#gate.decide(http);
    this.#undecided = undefined;
    this.#reading = tally;
    Object.assign(tally.exchange, { authority: http.host, decision });
    if (decision.allowed) {
      const h2c = tokens(head.headers, 'upgrade').includes('h2c');
      const switches = head.method === 'CONNECT' || (!h2c && values(head.headers, 'upgrade').length > 0);
      this.#current = 'forward';
      this.#queue.push({ forwarded: true, method: head.method, switches, tally });
      // An h2c upgrade would carry later requests past this filter: offer the pod none.
      this.#toPod(h2c ? withoutHeaders(raw, ['upgrade', 'http2-settings']) : raw);
      return;
    }
    this.#current = 'drop';
    // A client waiting for 100 Continue may never send the body it announced: its next bytes
    // cannot be framed, so the connection ends after the answer.
    const expects = tokens(head.headers, 'expect').includes('100-continue') && requestBody(head).kind !== 'none';
    const close = expects || wantsClose(head);
    this.#answer(403, 'Forbidden', DENIED_BODY, { close, head: head.method === 'HEAD', keepAlive10: head.version === '1.0' && !close }, tally);
  }

  #answer(status: number, reason: string, body: string, o: { close: boolean; head?: boolean; keepAlive10?: boolean }, tally?: ExchangeTally): void {
    const connection = o.close ? 'connection: close\r\n' : o.keepAlive10 ? 'connection: keep-alive\r\n' : '';
    const text = `HTTP/1.1 ${status} ${reason}\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncontent-type: text/plain\r\n${connection}\r\n${o.head ? '' : body}`;
    if (tally) Object.assign(tally.exchange, { status, responseBytes: o.head ? 0 : Buffer.byteLength(body) });
    this.#queue.push({ forwarded: false, response: Buffer.from(text), close: o.close, ...(tally ? { tally } : {}) });
    if (o.close) this.#closing = true;
    this.#flushLocal();
  }

  /** Writes the local answers now at the front of the queue. */
  #flushLocal(): void {
    for (let ex = this.#queue[0]; ex && !ex.forwarded; ex = this.#queue[0]) {
      this.#queue.shift();
      this.#toClient(ex.response);
      ex.tally?.end('-');
      if (ex.close) {
        this.#client.end();
        this.#pod.end();
        return;
      }
    }
  }

  #pumpResponses(): void {
    try {
      for (let ev = this.#responses.next(); ev; ev = this.#responses.next()) {
        const ex = this.#awaiting();
        if (!ex) throw new H1Error(400, 'the pod sent bytes with no request outstanding');
        if (ev.type === 'head') {
          this.#toClient(ev.raw);
          const s = ev.head.status;
          if (ex.switches && (s === 101 || (ex.method === 'CONNECT' && s >= 200 && s < 300))) {
            ex.tally.exchange.status = s;
            ex.tally.end('-');
            return this.#switch();
          }
          this.#interim = s < 200;
          if (!this.#interim) ex.tally.exchange.status = s;
        } else if (ev.type === 'body') {
          if (ev.content) ex.tally.exchange.responseBytes += ev.raw.length;
          this.#toClient(ev.raw);
        } else if (this.#interim) this.#interim = false;
        else this.#completed(ex);
      }
    } catch (err) {
      if (!(err instanceof H1Error)) throw err;
      this.#client.destroy(Object.assign(new Error(`pod: ${err.message}`), { code: 'ECONNRESET' }));
    }
  }

  #completed(ex: Exchange & { forwarded: true }): void {
    this.#queue.shift();
    ex.tally.end('-');
    this.#flushLocal();
    this.#flowClient();
    if (ex.switches && this.#held) {
      this.#held = false;
      this.#pumpRequests();
    }
  }

  #onPodEnd(): void {
    this.#closing = true;
    const ex = this.#awaiting();
    // A body delimited by the close is complete now; any other answer in flight was cut short.
    if (ex && this.#responses.closeDelimited) this.#completed(ex);
    if (!this.#client.writableEnded) this.#client.end();
    if (!this.#pod.writableEnded) this.#pod.end();
  }

  #switch(): void {
    this.#switched = true;
    for (const off of this.#detach) off();
    const fromClient = this.#requests.takeRest();
    const fromPod = this.#responses.takeRest();
    if (fromClient.length > 0) this.#pod.write(fromClient);
    if (fromPod.length > 0) this.#client.write(fromPod);
    if (this.#clientEnded) this.#pod.end();
    this.#done('switched');
  }

  /** The connection is gone: requests still unanswered (or answering) end with `flag`. */
  #cutShort(flag: 'DC' | 'UR'): void {
    for (const ex of this.#queue) ex.tally?.end(flag);
  }

  /** The forwarded exchange whose answer the pod sends next. */
  #awaiting(): (Exchange & { forwarded: true }) | undefined {
    const ex = this.#queue[0];
    return ex?.forwarded ? ex : undefined;
  }

  /** Carries the source's half-close to the pod once every request it sent is handled. */
  #endPodWhenDone(): void {
    if (this.#clientEnded && !this.#held && !this.#closing && !this.#pod.writableEnded) this.#pod.end();
  }

  #toPod(raw: Buffer): void {
    if (this.#pod.write(raw) || this.#podBlocked) return;
    this.#podBlocked = true;
    this.#pod.once('drain', () => {
      this.#podBlocked = false;
      this.#flowClient();
    });
  }

  #toClient(raw: Buffer): void {
    if (this.#client.write(raw) || this.#clientBlocked) return;
    this.#clientBlocked = true;
    this.#pod.pause();
    this.#client.once('drain', () => {
      this.#clientBlocked = false;
      if (!this.#switched) this.#pod.resume();
    });
  }

  #flowClient(): void {
    if (this.#switched) return;
    if (this.#podBlocked || this.#held || this.#queue.length >= MAX_QUEUED) this.#client.pause();
    else this.#client.resume();
  }

  #on(stream: Duplex, event: string, fn: (...args: any[]) => void): void {
    stream.on(event, fn);
    this.#detach.push(() => stream.off(event, fn));
  }
}

/** The request as the policy sees it: path normalized, Host from an absolute-form target. */
function attributes(head: RequestHead): AuthzHttp {
  // Istio rejects a method not in upper case: "get" must not slip past a DENY on GET.
  if (head.method !== head.method.toUpperCase()) throw new H1Error(400, `method ${head.method} is not in upper case`);
  const hosts = values(head.headers, 'host');
  if (hosts.length > 1) throw new H1Error(400, 'more than one Host header');
  const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(head.target);
  const host = absolute ? absolute[1]! : (hosts[0] ?? '');
  const target = absolute ? absolute[2] || '/' : head.target;
  const path = head.method === 'CONNECT' ? '' : target === '*' ? '*' : target.startsWith('/') ? normalizePath(target) : undefined;
  if (path === undefined) throw new H1Error(400, `request target ${JSON.stringify(head.target.slice(0, 60))} rejected by path normalization`);
  return { method: head.method, path, host, headers: mergeHeaders(head.headers) };
}

function wantsClose(head: RequestHead): boolean {
  const connection = tokens(head.headers, 'connection');
  return connection.includes('close') || (head.version === '1.0' && !connection.includes('keep-alive'));
}

function withoutHeaders(raw: Buffer, names: string[]): Buffer {
  const lines = raw.toString('latin1').split('\r\n');
  const kept = lines.filter((l, i) => i === 0 || !names.includes(l.slice(0, l.indexOf(':')).toLowerCase()));
  return Buffer.from(kept.join('\r\n'), 'latin1');
}
