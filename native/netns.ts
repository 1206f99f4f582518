// The libc calls Node lacks for listening inside another network namespace: setns(2) and
// the socket calls, so the agent can own a listening socket in a pod's netns (sk_lookup can
// only hand a connection to a socket of the netns it runs in).
import fs from 'node:fs';
import net from 'node:net';
import koffi from 'koffi';
import { NodemeshError } from '../agent/src/errors.js';
import { errnoName, nativeError } from './errno.js';

const CLONE_NEWNET = 0x40000000;
const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SOCKADDR_IN_SIZE = 16;

type Fn<A extends unknown[]> = (...args: A) => number;

interface Libc {
  setns: Fn<[number, number]>;
  socket: Fn<[number, number, number]>;
  setsockopt: Fn<[number, number, number, Buffer, number]>;
  bind: Fn<[number, Buffer, number]>;
  listen: Fn<[number, number]>;
}

let bound: Libc | undefined;

function libc(): Libc {
  if (bound) return bound;
  const so = koffi.load('libc.so.6');
  bound = {
    setns: so.func('int setns(int fd, int nstype)') as Fn<[number, number]>,
    socket: so.func('int socket(int domain, int type, int protocol)') as Fn<[number, number, number]>,
    setsockopt: so.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)') as Fn<[number, number, number, Buffer, number]>,
    bind: so.func('int bind(int fd, const void *addr, uint32_t addrlen)') as Fn<[number, Buffer, number]>,
    listen: so.func('int listen(int fd, int backlog)') as Fn<[number, number]>,
  };
  return bound;
}

function sockaddrIn(ip: string, port: number): Buffer {
  if (!net.isIPv4(ip)) throw new TypeError(`not an IPv4 address: "${ip}"`);
  const sa = Buffer.alloc(SOCKADDR_IN_SIZE);
  sa.writeUInt16LE(AF_INET, 0);
  sa.writeUInt16BE(port, 2);
  ip.split('.').forEach((part, i) => (sa[4 + i] = Number(part)));
  return sa;
}

/** The calling thread's network namespace, as an fd to come back to (the caller closes it). */
export function openOwnNetns(): number {
  // thread-self, not self: setns moves one thread, and this is the one that must return.
  return fs.openSync('/proc/thread-self/ns/net', 'r');
}

export interface NetnsListenOptions {
  /** The address the pod's IP must be local to in that netns: checked with a throwaway bind. */
  expectAddress: string;
  host: string;
  port: number;
  backlog: number;
}

/**
 * Opens a non-blocking TCP listening socket inside the network namespace `netnsFd` and
 * returns its fd (the caller owns it; `net.Server.listen({ fd })` takes it over). The main
 * thread enters the netns and is moved back to `ownNetnsFd` before this returns: everything
 * in between is synchronous, so no JavaScript ever runs in the pod's netns. Failing to come
 * back would leave the agent's thread in a pod's netns: that is fatal and aborts the process.
 */
export function listenInNetns(netnsFd: number, ownNetnsFd: number, opts: NetnsListenOptions, what: string): number {
  const c = libc();
  if (c.setns(netnsFd, CLONE_NEWNET) !== 0) {
    throw nativeError('NM_ERR_NETNS', 'setns', what, koffi.errno(), 'the agent needs CAP_SYS_ADMIN to enter pod network namespaces');
  }
  let fd = -1;
  let failure: NodemeshError | undefined;
  try {
    const probe = c.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) throw nativeError('NM_ERR_NETNS', 'socket', what, koffi.errno());
    const probeRc = c.bind(probe, sockaddrIn(opts.expectAddress, 0), SOCKADDR_IN_SIZE);
    const probeErrno = koffi.errno();
    fs.closeSync(probe);
    if (probeRc !== 0) {
      throw new NodemeshError(
        'NM_ERR_NETNS_NOT_FOUND',
        `${what}: ${opts.expectAddress} is not an address of that network namespace (${errnoName(probeErrno)}): the pod's cgroup holds a process of another netns`,
      );
    }
    fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw nativeError('NM_ERR_NETNS', 'socket', what, koffi.errno());
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    if (c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, one.length) !== 0) throw nativeError('NM_ERR_NETNS', 'setsockopt(SO_REUSEADDR)', what, koffi.errno());
    if (c.bind(fd, sockaddrIn(opts.host, opts.port), SOCKADDR_IN_SIZE) !== 0) {
      const errno = koffi.errno();
      throw nativeError('NM_ERR_NETNS', 'bind', `${what}, ${opts.host}:${opts.port}`, errno,
        errnoName(errno) === 'EADDRINUSE' ? `something in the pod already listens on ${opts.host}:${opts.port}` : undefined);
    }
    if (c.listen(fd, opts.backlog) !== 0) throw nativeError('NM_ERR_NETNS', 'listen', what, koffi.errno());
  } catch (err) {
    failure = err as NodemeshError;
    if (fd >= 0) fs.closeSync(fd);
  } finally {
    if (c.setns(ownNetnsFd, CLONE_NEWNET) !== 0) {
      const errno = koffi.errno();
      process.stderr.write(`nodemesh: cannot return to the agent's network namespace after ${what} (${errnoName(errno)}); aborting\n`);
      process.abort();
    }
  }
  if (failure) throw failure;
  return fd;
}
