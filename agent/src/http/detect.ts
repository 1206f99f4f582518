// Protocol detection: the Service port's appProtocol when it declares one, else the first
// bytes a source sends say whether it speaks HTTP/2 with prior knowledge (the connection
// preface), HTTP/1.x (a request line) or something else (opaque TCP, authorized at L4).
import type { Duplex } from 'node:stream';

export type Protocol = 'h2' | 'h1' | 'other';

/** The HTTP versions the proxies speak on a connection: HTTP/1.x or HTTP/2 with prior knowledge. */
export type HttpProtocol = Exclude<Protocol, 'other'>;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** Node's default limit for a whole HTTP/1 head; a longer request line is not HTTP we accept. */
const MAX_LINE = 16 * 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*$/;
const REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^\s]+ HTTP\/1\.[01]$/;

/** The protocol of a stream starting with `buf`, or undefined while more bytes could change it. */
export function classify(buf: Buffer): Protocol | undefined {
  const n = Math.min(buf.length, PREFACE.length);
  if (buf.subarray(0, n).equals(PREFACE.subarray(0, n))) return buf.length >= PREFACE.length ? 'h2' : undefined;
  const eol = buf.indexOf('\r\n');
  if (eol >= 0) return REQUEST_LINE.test(buf.subarray(0, eol).toString('latin1')) ? 'h1' : 'other';
  const space = buf.indexOf(' ');
  const method = buf.subarray(0, space < 0 ? buf.length : space).toString('latin1');
  return TOKEN.test(method) && buf.length < MAX_LINE ? undefined : 'other';
}

/**
 * Reads until the protocol is known, the source ends, or `timeoutMs` passes (a protocol where
 * the server speaks first never sends anything: it is then "other"). Resolves with the bytes
 * read, which the caller puts back or forwards; the stream is left paused.
 */
export function sniff(stream: Duplex, timeoutMs: number): Promise<{ protocol: Protocol; head: Buffer }> {
  return new Promise((resolve) => {
    let head: Buffer = Buffer.alloc(0);
    const done = (protocol: Protocol) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.pause();
      resolve({ protocol, head });
    };
    const onData = (chunk: Buffer) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const protocol = classify(head);
      if (protocol) done(protocol);
    };
    const onEnd = () => done('other');
    const timer = setTimeout(() => done('other'), timeoutMs);
    stream.on('data', onData);
    stream.once('end', onEnd);
    // Destroyed while sniffing: the caller sees `destroyed` and gives up.
    stream.once('close', onEnd);
  });
}

/** Service port appProtocol values that skip detection (Kubernetes and Istio spellings). */
export function declaredProtocol(appProtocol: string | undefined): HttpProtocol | 'tcp' | undefined {
  switch (appProtocol?.toLowerCase()) {
    case 'http':
      return 'h1';
    case 'kubernetes.io/h2c':
    case 'http2':
    case 'grpc':
      return 'h2';
    case 'tcp':
      return 'tcp';
    default:
      return undefined;
  }
}
