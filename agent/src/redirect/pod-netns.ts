// Finds a pod's network namespace from its cgroup: the pod's processes (in Kubernetes, in
// per-container child cgroups) live in it. The agent needs it to open the plaintext listener
// there and to attach sk_lookup to it.
import fs from 'node:fs';
import path from 'node:path';

/** Kubernetes nests pod → container (→ rarely one more level); bounded so a deep tree cannot stall the agent. */
const MAX_DEPTH = 4;
const MAX_CGROUPS = 64;

export interface NetnsCandidate {
  fd: number;
  /** The namespace's inode, as /proc/<pid>/ns/net and bpftool's netns_ino show it. */
  ino: bigint;
  pid: number;
}

/**
 * The distinct network namespaces of the processes in `cgroupPath` and its descendants, each
 * opened once (the caller closes every fd), except `excludeIno` — the agent's own: a process
 * that was just moved into the pod's cgroup but has not entered its netns yet (or a
 * hostNetwork pod) must never make the agent attach to the node's namespace. Empty when no
 * process runs there (a pod whose sandbox has not started) or the cgroup is gone.
 */
export function podNetnsCandidates(cgroupPath: string, excludeIno: bigint): NetnsCandidate[] {
  const found = new Map<bigint, NetnsCandidate>();
  const queue: Array<{ dir: string; depth: number }> = [{ dir: cgroupPath, depth: 0 }];
  let visited = 0;
  while (queue.length > 0 && visited < MAX_CGROUPS) {
    const { dir, depth } = queue.shift() as { dir: string; depth: number };
    visited += 1;
    for (const pid of readPids(dir)) {
      const candidate = openNetns(pid);
      if (!candidate) continue;
      if (candidate.ino === excludeIno || found.has(candidate.ino)) fs.closeSync(candidate.fd);
      else found.set(candidate.ino, candidate);
    }
    if (depth < MAX_DEPTH) for (const child of subdirectories(dir)) queue.push({ dir: child, depth: depth + 1 });
  }
  return [...found.values()];
}

/** The inode of the calling thread's network namespace. */
export function ownNetnsIno(): bigint {
  return fs.statSync('/proc/thread-self/ns/net', { bigint: true }).ino;
}

function readPids(dir: string): number[] {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function subdirectories(dir: string): string[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
}

/** The process may exit between reading cgroup.procs and this: then nothing. */
function openNetns(pid: number): NetnsCandidate | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(`/proc/${pid}/ns/net`, 'r');
    return { fd, ino: fs.fstatSync(fd, { bigint: true }).ino, pid };
  } catch {
    if (fd !== undefined) fs.closeSync(fd);
    return undefined;
  }
}
