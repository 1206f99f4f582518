// Start-up checks for the capture: privileges, the bpf() syscall, libbpf and cgroup v2, each
// failing with what to fix rather than a raw errno from deep inside the load.
import fs from 'node:fs';
import { NodemeshError } from '../errors.js';
import {
  BPF_PROG_TYPE_CGROUP_SKB,
  BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
  BPF_PROG_TYPE_SK_LOOKUP,
  BPF_PROG_TYPE_SOCK_OPS,
  probeProgType,
  requireLibbpf,
} from '../../../native/libbpf.js';

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;
const CGROUP2_SUPER_MAGIC = 0x63677270;

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The cgroup v2 mount point, wherever the host put it (unified or hybrid hierarchy). */
export function findCgroup2Mount(mounts = fs.readFileSync('/proc/mounts', 'utf8')): string {
  for (const line of mounts.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return unescapeMountPath(mountPoint);
  }
  throw new NodemeshError(
    'NM_ERR_STARTUP_CGROUP2',
    'no cgroup2 filesystem in /proc/mounts: boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) or mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)',
  );
}

/** The kernel's cgroup id of a cgroup v2 directory: its inode number. */
export function cgroupId(dir: string): bigint {
  return fs.statSync(dir, { bigint: true }).ino;
}

function effectiveCaps(): bigint {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex ? BigInt(`0x${hex}`) : 0n;
}

export function checkPrerequisites(cgroupRoot: string = findCgroup2Mount()): void {
  const caps = effectiveCaps();
  const has = (cap: bigint) => (caps & (1n << cap)) !== 0n;
  const missing = [
    ...(has(CAP_BPF) || has(CAP_SYS_ADMIN) ? [] : ['CAP_BPF']),
    ...(has(CAP_NET_ADMIN) || has(CAP_SYS_ADMIN) ? [] : ['CAP_NET_ADMIN']),
  ];
  if (missing.length > 0) {
    throw new NodemeshError(
      'NM_ERR_STARTUP_PRIVILEGE',
      `the agent lacks ${missing.join(' and ')} (CapEff ${caps.toString(16)}): run it as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN`,
    );
  }

  requireLibbpf();
  for (const [type, what] of [
    [BPF_PROG_TYPE_CGROUP_SOCK_ADDR, 'cgroup/connect4'],
    [BPF_PROG_TYPE_SOCK_OPS, 'sockops'],
    [BPF_PROG_TYPE_CGROUP_SKB, 'cgroup_skb (PeerAuthentication STRICT)'],
    [BPF_PROG_TYPE_SK_LOOKUP, 'sk_lookup (PeerAuthentication PERMISSIVE through the proxy)'],
  ] as const) {
    if (!probeProgType(type)) {
      throw new NodemeshError(
        'NM_ERR_STARTUP_BPF',
        `this kernel cannot load ${what} programs: it needs CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF (Linux >= 5.10)`,
      );
    }
  }

  let type: number;
  try {
    type = fs.statfsSync(cgroupRoot).type;
  } catch (err) {
    throw new NodemeshError('NM_ERR_STARTUP_CGROUP2', `cgroup root ${cgroupRoot} is not accessible: ${(err as Error).message}`, { cause: err });
  }
  if (type !== CGROUP2_SUPER_MAGIC) {
    throw new NodemeshError(
      'NM_ERR_STARTUP_CGROUP2',
      `cgroup root ${cgroupRoot} is not on a cgroup v2 filesystem (the cgroup2 mount is ${findCgroup2Mount()})`,
    );
  }
}
