// The HTTP/2 fuzz target: the destination's HTTP/2 filter (inbound/http/h2-authz.ts) fed whole
// connections: the client preface, frames, HPACK blocks, mutated. The filter sits on Node's
// HTTP/2 (nghttp2) and decides per stream; what matters to users is that no input crashes the
// agent, leaves a connection open once the source is gone, or gets a stream the policy denies
// to the pod. A pod that answers every stream stands behind the filter; the policy denies any
// path under /secret (after normalisation, as the filter matches).
// Seeds (test/fuzz-corpus/h2-inbound/) are what Node's HTTP/2 client writes for a GET, a POST,
// a gRPC call with trailers, a denied GET, and several streams with a reset, a PING and a
// SETTINGS change on one connection.
import http2 from 'node:http2';
import net from 'node:net';
import pino from 'pino';
import type { HttpGate } from '../../agent/src/inbound/http/gate.js';
import { serveH2 } from '../../agent/src/inbound/http/h2-authz.js';
import { normalizePath } from '../../agent/src/http/normalize-path.js';
import { socketPair } from '../../native/socketpair.js';
import { FuzzFinding } from './mutate.js';

/** After the source's last byte and end, its connection must be closed within this. */
const CLOSE_WITHIN_MS = 2000;

const denied = (path: string): boolean => {
  const p = normalizePath(path);
  return p !== undefined && (p === '/secret' || p.startsWith('/secret/'));
};

const gate: HttpGate = {
  decide: (http) => (http && denied(http.path) ? { allowed: false, reason: 'fuzz: /secret is denied' } : { allowed: true, reason: 'fuzz' }),
  exchanged: () => {},
};

const log = pino({ level: 'silent' });
/** Streams in flight after the source's end: short, so a thousand inputs take seconds. */
const GRACE_MS = 10;
/** A client's clean close: GOAWAY, no error, last stream 0. */
const GOAWAY = Buffer.from('0000080700000000000000000000000000', 'hex');

/** What the pod got on one connection, and when that connection closed. */
class PodConnection {
  readonly paths: string[] = [];
  #closed!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.#closed = resolve));
  close = (): void => this.#closed();
}

/** The pod, with its connections by the source port they came from (the accept and the connect race). */
interface Pod {
  port: number;
  connection(port: number): PodConnection;
  forget(port: number): void;
}
let pod: Pod | undefined;

async function startPod(): Promise<Pod> {
  const connections = new Map<number, PodConnection>();
  const connection = (port: number): PodConnection => {
    let c = connections.get(port);
    if (!c) connections.set(port, (c = new PodConnection()));
    return c;
  };
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    connection(stream.session?.socket.remotePort ?? 0).paths.push(String(headers[':path']));
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  h2.on('sessionError', () => {});
  const server = net.createServer((socket) => {
    // Node's HTTP/2 session reads the socket natively; its end still shows as 'end'.
    const { close } = connection(socket.remotePort!);
    socket.once('end', close).once('close', close);
    h2.emit('connection', socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // The fuzzer runs to the end of the process; the pod must not keep it alive.
  server.unref();
  return { port: (server.address() as net.AddressInfo).port, connection, forget: (port) => connections.delete(port) };
}

/** One connection through the filter: `input` in random pieces, maybe a GOAWAY, then the source's end. */
export async function h2Inbound(input: Buffer, rand: () => number): Promise<void> {
  pod ??= await startPod();
  const podSocket = net.connect(pod.port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => podSocket.once('connect', resolve).once('error', reject));
  const podPort = podSocket.localPort!;
  const [source, filter] = socketPair();
  source.on('error', () => {});
  source.resume();
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), CLOSE_WITHIN_MS);
    source.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  source.once('finish', serveH2(filter, podSocket, gate, log, GRACE_MS));
  const bytes = rand() < 0.5 ? Buffer.concat([input, GOAWAY]) : input;
  for (let fed = 0; fed < bytes.length; ) {
    const n = 1 + Math.floor(rand() * Math.min(256, bytes.length - fed));
    source.write(bytes.subarray(fed, fed + n));
    fed += n;
  }
  source.end();
  const wasClosed = await closed;
  source.destroy();
  filter.destroy();
  podSocket.destroy();
  if (!wasClosed) throw new FuzzFinding(`the source's connection was still open ${CLOSE_WITHIN_MS} ms after it ended`);
  // Everything the filter sent the pod has been read once the pod saw the connection close.
  const seen = pod.connection(podPort);
  await seen.closed;
  pod.forget(podPort);
  const leaked = seen.paths.filter(denied);
  if (leaked.length > 0) throw new FuzzFinding(`denied paths reached the pod: ${JSON.stringify(leaked)}`);
}
