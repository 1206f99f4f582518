// Byte relay between the accepted pod connection and the upstream connection: backpressure
// (pipe pauses the faster side), half-close carried across (FIN one way, the other way keeps
// flowing) and a reset on one side turned into a reset on the other, not a clean close.
import type { Socket } from 'node:net';

export interface RelayResult {
  /** Bytes read from the downstream (pod) socket and written upstream. */
  bytesFromDownstream: number;
  /** Bytes read from upstream and written to the pod. */
  bytesFromUpstream: number;
  /** The first error seen on either side, if any (e.g. ECONNRESET). */
  error?: NodeJS.ErrnoException;
}

/** Both sockets must have been created with allowHalfOpen: true. Resolves once both are closed. */
export function relay(downstream: Socket, upstream: Socket): Promise<RelayResult> {
  return new Promise((resolve) => {
    let firstError: NodeJS.ErrnoException | undefined;
    let closed = 0;

    const onError = (peer: Socket) => (err: NodeJS.ErrnoException) => {
      firstError ??= err;
      // A reset (or any error) on one side is passed on as a reset, so the other end sees the
      // failure instead of a clean end of stream that would look like a complete response.
      if (!peer.destroyed) peer.resetAndDestroy();
    };
    const onClose = () => {
      closed += 1;
      if (closed < 2) return;
      resolve({
        bytesFromDownstream: downstream.bytesRead,
        bytesFromUpstream: upstream.bytesRead,
        ...(firstError ? { error: firstError } : {}),
      });
    };

    downstream.on('error', onError(upstream));
    upstream.on('error', onError(downstream));
    downstream.on('close', onClose);
    upstream.on('close', onClose);
    // Once both directions have ended, close; allowHalfOpen would otherwise keep the fd open.
    const closeWhenBothEnded = () => {
      if (downstream.readableEnded && upstream.readableEnded) {
        downstream.destroySoon();
        upstream.destroySoon();
      }
    };
    downstream.on('end', closeWhenBothEnded);
    upstream.on('end', closeWhenBothEnded);

    downstream.pipe(upstream);
    upstream.pipe(downstream);
    downstream.resume();
  });
}
