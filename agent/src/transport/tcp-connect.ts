// A plain TCP connect with a deadline: how the proxy reaches a pod from its node (inbound) and
// an external endpoint (an EndpointSlice address outside the mesh).
import net from 'node:net';

/** Rejects with the socket's errno, or ETIMEDOUT after `timeoutMs`. */
export function tcpConnect(target: { ip: string; port: number }, localAddress: string | undefined, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.ip, port: target.port, allowHalfOpen: true, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('error', onError);
  });
}
