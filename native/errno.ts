// Turns the errno of a failed native call into a NodemeshError that names the call, the
// object and what an operator should check.
import os from 'node:os';
import { NodemeshError, type ErrorCode } from '../agent/src/errors.js';

const NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

export function errnoName(errno: number): string {
  return NAMES.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

const HINTS: Record<string, string> = {
  EPERM: 'run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN',
  EACCES: 'run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN',
  ENOENT: 'the path or element does not exist',
  EEXIST: 'something is already pinned there; `nodemesh agent --cleanup` removes stale pins',
  E2BIG: 'the map is full; raise its max_entries in bpf/nodemesh.h',
  ENOSPC: 'the map is full; raise its max_entries in bpf/nodemesh.h',
  EINVAL: 'the kernel rejected the request; the libbpf/verifier log on stderr says why',
  ENOTSUP: 'this kernel lacks the feature (nodemesh needs Linux >= 5.10 with cgroup v2 and BPF links)',
  EOPNOTSUPP: 'this kernel lacks the feature (nodemesh needs Linux >= 5.10 with cgroup v2 and BPF links)',
  EBADF: 'the file descriptor is closed or not a BPF object',
};

/** `errno` may be negative (libbpf's int returns) or positive (errno). */
export function nativeError(code: ErrorCode, call: string, target: string, errno: number, hint?: string): NodemeshError {
  const name = errnoName(errno);
  const why = hint ?? HINTS[name];
  return new NodemeshError(code, `${call}(${target}) failed: ${name}${why ? ` (${why})` : ''}`);
}
