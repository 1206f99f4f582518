// A connected pair of kernel sockets inside the agent (socketpair(2), AF_UNIX stream): the
// same-node L7 path puts it between the source's upstream pool and the destination's filter,
// so each end is a libuv stream. Over an in-memory Duplex pair, Node runs an HTTP/2 session
// through JSStreamSocket (one write in flight, completed on the next turn of the loop), and
// concurrent streams stall behind each other.
import net from 'node:net';
import koffi from 'koffi';
import { nativeError } from './errno.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

type SocketPairFn = (domain: number, type: number, protocol: number, fds: Int32Array) => number;
let socketpairFn: SocketPairFn | undefined;

/** Two connected sockets; each end reads what the other writes, and sees its end as EOF. */
export function socketPair(): [net.Socket, net.Socket] {
  socketpairFn ??= koffi.load('libc.so.6').func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)') as SocketPairFn;
  const fds = new Int32Array(2);
  if (socketpairFn(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) !== 0) {
    throw nativeError('NM_ERR_NATIVE_SOCKETPAIR', 'socketpair', 'AF_UNIX', koffi.errno(), 'the agent may be out of file descriptors (raise its open-files limit)');
  }
  return [new net.Socket({ fd: fds[0]!, readable: true, writable: true, allowHalfOpen: true }), new net.Socket({ fd: fds[1]!, readable: true, writable: true, allowHalfOpen: true })];
}
