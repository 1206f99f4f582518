// How the data path aborts one end of a connection so the peer sees a reset, never a clean
// end that could pass for a complete answer.
import net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * A TCP reset for a TCP socket; for a tunnel stream (RST_STREAM) or an in-process socket pair,
 * a destroy with ECONNRESET, which their readers take as a reset.
 */
export function reset(end: Duplex): void {
  if (end.destroyed) return;
  // After end(), Node 20 cannot reset (uv_tcp_close_reset refuses a shutting-down handle) and
  // the socket never closes: it has sent its FIN already, so a plain close it is.
  if (end instanceof net.Socket && !end.writableEnded) {
    try {
      end.resetAndDestroy();
      return;
    } catch (err) {
      // Only TCP can send a reset; a unix socket throws ERR_INVALID_HANDLE_TYPE.
      if ((err as NodeJS.ErrnoException).code !== 'ERR_INVALID_HANDLE_TYPE') throw err;
    }
  }
  end.destroy(Object.assign(new Error('peer reset the connection'), { code: 'ECONNRESET' }));
}
