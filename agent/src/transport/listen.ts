// Opening a listener with an error that names the listener, the address and the likely cause.
import type { Server } from 'node:net';
import { NodemeshError, type ErrorCode } from '../errors.js';

export function listen(server: Server, what: string, code: ErrorCode, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new NodemeshError(
          code,
          `${what} cannot listen on ${host}:${port}: ${err.code ?? err.message}` +
            (err.code === 'EADDRINUSE' ? ' (is another agent running on this node, or another program on that port?)' : '') +
            (err.code === 'EADDRNOTAVAIL' ? ` (${host} is not an address of this host)` : ''),
          { cause: err },
        ),
      );
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** "ip:port" of a listening server, or '' before it listens. */
export function addressOf(server: Server): string {
  const a = server.address();
  return a && typeof a === 'object' ? `${a.address}:${a.port}` : '';
}
