// The destination's HTTP-aware path, used when the source declared HTTP (to see each request)
// or a policy on the pod's port needs methods, paths, hosts or headers: what the caller relays
// is not the pod socket but one end of a kernel socket pair whose other end is served here. The
// declared protocol, else the first bytes, pick the filter (h2 preface, HTTP/1 request line);
// anything else is decided at L4, where ALLOW rules on HTTP fields cannot match.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { sniff, type HttpProtocol } from '../http/detect.js';
import type { HttpGate } from './http/gate.js';
import { serveH1 } from './http/h1-authz.js';
import { serveH2 } from './http/h2-authz.js';
import { socketPair } from '../../../native/socketpair.js';
import { reset } from '../transport/reset.js';
import { relay } from '../transport/relay.js';

export interface L7Options {
  /** What the source said the connection carries; undefined: detect it. */
  protocol?: HttpProtocol;
  /** A source silent this long (a server-speaks-first protocol) is decided at L4. */
  detectTimeoutMs: number;
  log: Logger;
}

/** The stream the caller relays in place of `pod`; allowHalfOpen, a reset shows as an error. */
export function l7Inbound(pod: net.Socket, gate: HttpGate, opts: L7Options): Duplex {
  const [outer, inner] = socketPair();
  // A kernel pair carries data, ends and closes; a reset it shows as a plain end, so a reset
  // on either end is carried across here, never taken for a complete answer.
  outer.once('close', () => {
    if (outer.errored) reset(inner);
  });
  inner.once('close', () => {
    if (inner.errored) reset(outer);
  });
  void serve(outer, inner, pod, gate, opts);
  return outer;
}

/** `outer` is the caller's end: its write side finishing is the source's end. */
async function serve(outer: Duplex, inner: Duplex, pod: net.Socket, gate: HttpGate, opts: L7Options): Promise<void> {
  // Errors surface as 'close' (with `errored`), which every path below handles.
  pod.on('error', () => {});
  inner.on('error', () => {});
  const { protocol, head } = opts.protocol ? { protocol: opts.protocol, head: Buffer.alloc(0) } : await sniff(inner, opts.detectTimeoutMs);
  if (inner.destroyed) {
    pod.destroy();
    return;
  }
  if (protocol === 'h2') {
    inner.unshift(head);
    const sourceEnded = serveH2(inner, pod, gate, opts.log);
    if (outer.writableFinished) sourceEnded();
    else outer.once('finish', sourceEnded);
    return;
  }
  if (protocol === 'h1') {
    if ((await serveH1(inner, pod, gate, head)) === 'switched') await relay(inner, pod);
    return;
  }
  if (!gate.decide().allowed) {
    // Refused before any byte reached the pod, as the L4 path refuses.
    pod.destroy();
    reset(inner);
    return;
  }
  if (head.length > 0) pod.write(head);
  await relay(inner, pod);
}
