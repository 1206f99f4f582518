// The few libc calls Node lacks: mounting bpffs where the agent pins its objects when the
// host (or the container runtime) did not mount it.
import fs from 'node:fs';
import koffi from 'koffi';
import { nativeError } from './errno.js';

/** statfs f_type of a bpf filesystem (BPF_FS_MAGIC). */
const BPF_FS_MAGIC = 0xcafe4a11;

type MountFn = (source: string, target: string, fstype: string, flags: number, data: null) => number;
let mountFn: MountFn | undefined;

export function isBpffs(dir: string): boolean {
  try {
    return fs.statfsSync(dir).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

export function mountBpffs(dir: string): void {
  mountFn ??= koffi
    .load('libc.so.6')
    .func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)') as MountFn;
  fs.mkdirSync(dir, { recursive: true });
  if (mountFn('bpf', dir, 'bpf', 0, null) !== 0) {
    throw nativeError('NM_ERR_STARTUP_BPF', 'mount', `bpf on ${dir}`, koffi.errno(),
      'mount bpffs yourself (mount -t bpf bpf /sys/fs/bpf) or run with CAP_SYS_ADMIN');
  }
}
