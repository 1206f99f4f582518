// Byte relay between two ends of a proxied connection (TCP sockets or HBONE tunnel streams):
// backpressure (pipe pauses the faster side), half-close carried across (end of one
// direction, the other keeps flowing) and a reset on one side turned into a reset on the
// other, never a clean close that would pass for a complete answer.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { reset } from './reset.js';

export interface RelayResult {
  /** Bytes read from the downstream end and written upstream. */
  bytesFromDownstream: number;
  /** Bytes read from upstream and written downstream. */
  bytesFromUpstream: number;
  /** The first error seen on either side, if any (e.g. ECONNRESET). */
  error?: NodeJS.ErrnoException;
}

/** Sockets must have been created with allowHalfOpen: true. Resolves once both ends are closed. */
export function relay(downstream: Duplex, upstream: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    let firstError: NodeJS.ErrnoException | undefined;
    let closed = 0;
    const bytes = { down: 0, up: 0 };
    downstream.on('data', (chunk: Buffer) => (bytes.down += chunk.length));
    upstream.on('data', (chunk: Buffer) => (bytes.up += chunk.length));

    const onError = (peer: Duplex) => (err: NodeJS.ErrnoException) => {
      firstError ??= err;
      reset(peer);
    };
    const onClose = () => {
      closed += 1;
      if (closed < 2) return;
      resolve({ bytesFromDownstream: bytes.down, bytesFromUpstream: bytes.up, ...(firstError ? { error: firstError } : {}) });
    };
    // A stream destroyed without an error (e.g. RST_STREAM with CANCEL) still must not look
    // like a clean end on the other side.
    const onPrematureClose = (self: Duplex, peer: Duplex) => () => {
      if (!self.readableEnded && !peer.destroyed) {
        firstError ??= Object.assign(new Error('closed before the end of stream'), { code: 'ECONNRESET' });
        reset(peer);
      }
      onClose();
    };

    downstream.on('error', onError(upstream));
    upstream.on('error', onError(downstream));
    downstream.on('close', onPrematureClose(downstream, upstream));
    upstream.on('close', onPrematureClose(upstream, downstream));
    // Once both directions have ended, close; allowHalfOpen would otherwise keep a socket open.
    const closeWhenBothEnded = () => {
      if (downstream.readableEnded && upstream.readableEnded) {
        for (const end of [downstream, upstream]) {
          if (end instanceof net.Socket) end.destroySoon();
        }
      }
    };
    downstream.on('end', closeWhenBothEnded);
    upstream.on('end', closeWhenBothEnded);

    downstream.pipe(upstream);
    upstream.pipe(downstream);
    downstream.resume();
  });
}
