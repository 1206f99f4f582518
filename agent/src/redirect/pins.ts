// The agent's pin directory on bpffs: where programs, links and maps outlive the agent
// process, so pods stay captured across restarts until the next start or --cleanup.
import fs from 'node:fs';
import path from 'node:path';
import { NodemeshError } from '../errors.js';
import { BpfLink } from '../../../native/libbpf.js';
import { isBpffs, mountBpffs } from '../../../native/libc.js';

const DEFAULT_BPFFS = '/sys/fs/bpf';

export class PinLayout {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  program(name: string): string {
    return path.join(this.dir, 'progs', name);
  }

  link(name: string): string {
    return path.join(this.dir, 'links', name);
  }

  map(name: string): string {
    return path.join(this.dir, 'maps', name);
  }

  create(): void {
    for (const sub of ['progs', 'links', 'maps']) fs.mkdirSync(path.join(this.dir, sub), { recursive: true });
  }

  /**
   * Detaches pinned links (even if a running process still holds them), then unpins
   * everything and removes the directory. Idempotent.
   */
  removeAll(): void {
    if (!fs.existsSync(this.dir)) return;
    const links = path.join(this.dir, 'links');
    if (fs.existsSync(links)) for (const name of fs.readdirSync(links)) BpfLink.detachPinned(path.join(links, name));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function nearestExisting(dir: string): string {
  let d = path.resolve(dir);
  while (!fs.existsSync(d)) d = path.dirname(d);
  return d;
}

/** Makes sure `dir` can hold pins: mounts bpffs at /sys/fs/bpf when nothing did. */
export function ensureBpffs(dir: string): void {
  if (isBpffs(nearestExisting(dir))) return;
  if (!isBpffs(DEFAULT_BPFFS)) mountBpffs(DEFAULT_BPFFS);
  if (!isBpffs(nearestExisting(dir))) {
    throw new NodemeshError(
      'NM_ERR_BPF_PIN',
      `pin directory ${dir} is not on a bpf filesystem: use a directory under ${DEFAULT_BPFFS} (--bpffs)`,
    );
  }
}
