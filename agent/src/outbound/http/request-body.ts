// A request body the proxy may have to send more than once: to a retry after a failed attempt
// and to a mirror. The body streams to the current attempt as it arrives (gRPC streaming
// calls must not wait for the end) and a copy is kept up to a limit, as Envoy's
// per-request buffer does; past the limit the body can no longer be replayed.
import { Readable } from 'node:stream';

/** Where an attempt's body goes: an HTTP/2 stream or an HTTP/1.1 exchange. */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  on(event: 'drain', fn: () => void): unknown;
  off(event: 'drain', fn: () => void): unknown;
}

/** Envoy's default per_request_buffer_limit_bytes for retries and mirrors is in this range. */
export const REPLAY_LIMIT = 64 * 1024;

export class RequestBody {
  readonly #source: Readable;
  readonly #limit: number;
  #chunks: Buffer[] = [];
  #size = 0;
  #overflow = false;
  #ended = false;
  #sink?: BodySink;
  readonly #onDrain = () => this.#source.resume();
  #whenComplete: Array<(body: Buffer) => void> = [];

  constructor(source: Readable, ended: boolean, limit = REPLAY_LIMIT) {
    this.#source = source;
    this.#limit = limit;
    this.#ended = ended;
    if (ended) return;
    source.pause();
    source.on('data', (chunk: Buffer) => {
      this.#keep(chunk);
      if (this.#sink && !this.#sink.write(chunk)) this.#source.pause();
    });
    source.once('end', () => {
      this.#ended = true;
      this.#sink?.end();
      if (!this.#overflow) for (const fn of this.#whenComplete.splice(0)) fn(Buffer.concat(this.#chunks));
    });
  }

  /** A body already complete in memory (a mirror's copy). */
  static of(bytes: Buffer): RequestBody {
    const body = new RequestBody(Readable.from([]), true);
    if (bytes.length > 0) body.#chunks.push(bytes);
    body.#size = bytes.length;
    return body;
  }

  /** Body bytes received so far. */
  get size(): number {
    return this.#size;
  }

  /** Nothing more will come and nothing came: the upstream request can end with its headers. */
  get empty(): boolean {
    return this.#ended && this.#size === 0;
  }

  /** Every byte received so far is kept: another attempt can send the whole body. */
  get replayable(): boolean {
    return !this.#overflow;
  }

  /** Sends the body to `sink` from the start (what was kept, then the rest as it arrives). */
  attach(sink: BodySink): void {
    this.detach();
    for (const chunk of this.#chunks) sink.write(chunk);
    if (this.#ended) {
      sink.end();
      return;
    }
    this.#sink = sink;
    sink.on('drain', this.#onDrain);
    this.#source.resume();
  }

  /** The current attempt is over; the body waits for the next one. */
  detach(): void {
    if (!this.#sink) return;
    this.#sink.off('drain', this.#onDrain);
    this.#sink = undefined;
    if (!this.#ended) this.#source.pause();
  }

  /** Calls `fn` with the whole body once it is complete and within the limit (mirrors). */
  whenComplete(fn: (body: Buffer) => void): void {
    if (this.#overflow) return;
    if (this.#ended) fn(Buffer.concat(this.#chunks));
    else this.#whenComplete.push(fn);
  }

  #keep(chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#overflow) return;
    if (this.#size > this.#limit) {
      this.#overflow = true;
      this.#chunks = [];
      this.#whenComplete = [];
      return;
    }
    this.#chunks.push(chunk);
  }
}
