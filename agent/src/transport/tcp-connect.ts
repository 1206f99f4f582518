// A plain TCP connect with a deadline: how the proxy reaches a pod from its node (inbound) and
// an external endpoint (an EndpointSlice address outside the mesh). A failure is a result, with
// why in words, never a throw: each caller maps it to its own answer (an HTTP status on an
// HBONE CONNECT, an Envoy response flag on the outbound side).
import net from 'node:net';

export type ConnectResult = { socket: net.Socket } | { failed: 'timeout' | 'error'; reason: string };

/** Connects to `target` (named `what` in the reason), from `localAddress` when given, within `timeoutMs`. */
export function tcpConnect(target: { ip: string; port: number }, what: string, timeoutMs: number, localAddress?: string): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.ip, port: target.port, allowHalfOpen: true, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ failed: 'timeout', reason: `${what} did not answer within ${timeoutMs} ms` });
    }, timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const hint = err.code === 'ECONNREFUSED' ? ' (does it listen on that port?)' : '';
      resolve({ failed: 'error', reason: `${what}: ${err.code ?? err.message}${hint}` });
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve({ socket });
    });
  });
}
