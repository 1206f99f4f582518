// Where the prebuilt eBPF objects live: the repo's bpf/ folder, found by walking up from
// this module so the same code works from agent/src and from dist/.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONNECT4_OBJECT = 'connect4.bpf.o';
export const SOCKOPS_OBJECT = 'sockops.bpf.o';
export const INGRESS_OBJECT = 'ingress.bpf.o';
export const SK_LOOKUP_OBJECT = 'sk_lookup.bpf.o';

export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'bpf', 'nodemesh.h'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`nodemesh: no bpf/ folder above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

export function defaultObjDir(): string {
  return path.join(repoRoot(), 'bpf');
}
