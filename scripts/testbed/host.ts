// What the testbed asks of the host: run ip/nsenter, find cgroup v2, and tear down netns,
// cgroup trees and bpffs pins by name. Teardown is synchronous so it can also run
// from a process 'exit' handler, and tolerant so it can clean a half-built testbed.

import { tmpdir } from 'node:os';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NodemeshError } from '../../agent/src/errors.js';

export const NETNS_DIR = '/var/run/netns';
export const BPF_PIN_DIR = '/sys/fs/bpf/nodemesh';

const COMMAND_TIMEOUT_MS = 10_000;
const DRAIN_WAIT_MS = 3_000;

/** Runs a setup command; its stderr becomes the error message when it fails. */
export function run(argv: string[]): Promise<void> {
  const [file, ...args] = argv as [string, ...string[]];
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error === null) {
        resolve();
        return;
      }
      const detail = stderr.trim() || error.message;
      reject(new NodemeshError('NM_ERR_TESTBED_COMMAND', `\`${argv.join(' ')}\` failed: ${detail}`, { cause: error }));
    });
  });
}

/** The cgroup v2 mount point, read from /proc/mounts (hybrid hosts mount it elsewhere). */
export function cgroup2Mount(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint !== undefined) {
      return mountPoint.replace(/\\040/g, ' ');
    }
  }
  throw new NodemeshError('NM_ERR_TESTBED_CGROUP2', 'no cgroup2 filesystem in /proc/mounts; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)');
}

export function netnsPath(name: string): string {
  return join(NETNS_DIR, name);
}

/** Which names (netns, top-level cgroup dir, dir under /sys/fs/bpf/nodemesh) to remove. */
export interface Selector {
  netns: (name: string) => boolean;
  cgroup: (name: string) => boolean;
  bpfPin: (name: string) => boolean;
  /** Scratch directories under the system temp dir (configs, the shared mesh CA). */
  scratch: (name: string) => boolean;
}

/** Kills what runs in the selected netns and cgroup trees, then removes them and the pins. */
export function removeSelected(select: Selector): void {
  const namespaces = listNames(NETNS_DIR, select.netns);
  const cgroupBase = cgroup2MountOrNull();
  const cgroups = cgroupBase === null ? [] : listNames(cgroupBase, select.cgroup).map((n) => join(cgroupBase, n));
  for (const ns of namespaces) {
    killPids(netnsPids(ns));
  }
  for (const dir of cgroups) {
    killCgroupTree(dir);
  }
  for (const ns of namespaces) {
    spawnSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
  }
  for (const dir of cgroups) {
    removeCgroupTree(dir);
  }
  for (const pin of listNames(BPF_PIN_DIR, select.bpfPin)) {
    rmSync(join(BPF_PIN_DIR, pin), { recursive: true, force: true });
  }
  for (const dir of listNames(tmpdir(), select.scratch)) {
    rmSync(join(tmpdir(), dir), { recursive: true, force: true });
  }
}

function cgroup2MountOrNull(): string | null {
  try {
    return cgroup2Mount();
  } catch {
    return null;
  }
}

function listNames(dir: string, select: (name: string) => boolean): string[] {
  try {
    return readdirSync(dir).filter(select);
  } catch {
    return [];
  }
}

function netnsPids(ns: string): number[] {
  const out = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
  return parsePids(out);
}

function parsePids(text: string): number[] {
  return text.split(/\s+/).filter((s) => s !== '').map(Number).filter((pid) => pid !== process.pid);
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function subdirectories(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch {
    return [];
  }
}

function killCgroupTree(dir: string): void {
  // cgroup.kill (Linux 5.14+) kills the whole subtree atomically; without it, walk the procs.
  const killFile = join(dir, 'cgroup.kill');
  if (existsSync(killFile)) {
    try {
      writeFileSync(killFile, '1');
    } catch {
      // Removed meanwhile.
    }
  } else {
    killPids(parsePids(readOr(join(dir, 'cgroup.procs'), '')));
    subdirectories(dir).forEach(killCgroupTree);
  }
  const deadline = Date.now() + DRAIN_WAIT_MS;
  while (/populated 1/.test(readOr(join(dir, 'cgroup.events'), '')) && Date.now() < deadline) {
    sleepSync(20);
  }
}

function removeCgroupTree(dir: string): void {
  subdirectories(dir).forEach(removeCgroupTree);
  try {
    rmdirSync(dir);
  } catch {
    // Missing already, or still busy after the drain wait: sweep gets it next time.
  }
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
