// Typed, thin bindings over Debian's libbpf.so.1 (koffi): objects, programs, cgroup links,
// pins and map elements. libbpf 1.x returns -errno from int calls and NULL + errno from
// pointer calls; both become NodemeshErrors here so callers never see raw koffi values.
import koffi from 'koffi';
import { NodemeshError } from '../agent/src/errors.js';
import { errnoName, nativeError } from './errno.js';

type Ptr = unknown;

// Bound on first use, so commands that never touch BPF (status, flows) run without libbpf.
let bound: ReturnType<typeof bind> | undefined;

/** The bound functions; throws NM_ERR_STARTUP_LIBBPF when libbpf.so.1 is not installed. */
export function requireLibbpf(): ReturnType<typeof bind> {
  return (bound ??= bind(loadLibbpf()));
}
const lib = requireLibbpf;

function bind(so: koffi.IKoffiLib) {
  koffi.opaque('bpf_object');
  koffi.opaque('bpf_program');
  koffi.opaque('bpf_map');
  koffi.opaque('bpf_link');
  return {
    objectOpenFile: so.func('bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
    objectLoad: so.func('int bpf_object__load(bpf_object *obj)'),
    objectClose: so.func('void bpf_object__close(bpf_object *obj)'),
    findProgram: so.func('bpf_program *bpf_object__find_program_by_name(bpf_object *obj, const char *name)'),
    findMap: so.func('bpf_map *bpf_object__find_map_by_name(bpf_object *obj, const char *name)'),
    programFd: so.func('int bpf_program__fd(bpf_program *prog)'),
    programPin: so.func('int bpf_program__pin(bpf_program *prog, const char *path)'),
    attachCgroup: so.func('bpf_link *bpf_program__attach_cgroup(bpf_program *prog, int cgroup_fd)'),
    attachNetns: so.func('bpf_link *bpf_program__attach_netns(bpf_program *prog, int netns_fd)'),
    linkOpen: so.func('bpf_link *bpf_link__open(const char *path)'),
    linkUpdateProgram: so.func('int bpf_link__update_program(bpf_link *link, bpf_program *prog)'),
    objGet: so.func('int bpf_obj_get(const char *pathname)'),
    mapType: so.func('int bpf_map__type(bpf_map *map)'),
    mapKeySize: so.func('uint32_t bpf_map__key_size(bpf_map *map)'),
    mapValueSize: so.func('uint32_t bpf_map__value_size(bpf_map *map)'),
    mapMaxEntries: so.func('uint32_t bpf_map__max_entries(bpf_map *map)'),
    mapFlags: so.func('uint32_t bpf_map__map_flags(bpf_map *map)'),
    linkPin: so.func('int bpf_link__pin(bpf_link *link, const char *path)'),
    linkFd: so.func('int bpf_link__fd(bpf_link *link)'),
    linkDetach: so.func('int bpf_link__detach(bpf_link *link)'),
    linkDestroy: so.func('int bpf_link__destroy(bpf_link *link)'),
    mapFd: so.func('int bpf_map__fd(bpf_map *map)'),
    mapSetPinPath: so.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
    objGetInfo: so.func('int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)'),
    mapUpdate: so.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    mapLookup: so.func('int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)'),
    mapDelete: so.func('int bpf_map_delete_elem(int fd, const void *key)'),
    mapNextKey: so.func('int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next_key)'),
    probeProgType: so.func('int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)'),
    numPossibleCpus: so.func('int libbpf_num_possible_cpus(void)'),
  };
}

function loadLibbpf(): koffi.IKoffiLib {
  try {
    return koffi.load('libbpf.so.1');
  } catch (err) {
    throw new NodemeshError(
      'NM_ERR_STARTUP_LIBBPF',
      "libbpf.so.1 not found: install Debian's libbpf1 (apt-get install libbpf1)",
      { cause: err },
    );
  }
}

const ENOENT = 2;

/** Pointer-returning calls: NULL means failure with errno set. */
function must<T extends Ptr>(ptr: T | null, fail: (errno: number) => NodemeshError): T {
  if (ptr === null) throw fail(koffi.errno());
  return ptr;
}

function check(rc: number, fail: (errno: number) => NodemeshError): number {
  if (rc < 0) throw fail(rc);
  return rc;
}

/** BPF_MAP_UPDATE_ELEM flag: create or replace. */
export const BPF_ANY = 0;

/** enum bpf_prog_type values the agent probes for. */
export const BPF_PROG_TYPE_CGROUP_SKB = 8;
export const BPF_PROG_TYPE_SOCK_OPS = 13;
export const BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18;
export const BPF_PROG_TYPE_SK_LOOKUP = 30;

export class BpfObject {
  readonly path: string;
  #obj: Ptr;

  private constructor(path: string, obj: Ptr) {
    this.path = path;
    this.#obj = obj;
  }

  static open(path: string): BpfObject {
    const obj = must(lib().objectOpenFile(path, null), (e) =>
      nativeError('NM_ERR_BPF_LOAD', 'bpf_object__open_file', path, e,
        e === ENOENT ? 'the prebuilt object is missing; run scripts/build-bpf.sh' : undefined),
    );
    return new BpfObject(path, obj);
  }

  /** Before load: make the map live at `pin` (reused if already pinned, else created and pinned). */
  setMapPinPath(name: string, pin: string): void {
    const map = this.#map(name);
    check(lib().mapSetPinPath(map, pin), (e) => nativeError('NM_ERR_BPF_PIN', 'bpf_map__set_pin_path', `${name}, ${pin}`, e));
  }

  /** Before load: the map's definition as this object would create it. */
  mapDef(name: string): MapDef {
    const map = this.#map(name);
    return {
      type: lib().mapType(map) as number,
      keySize: lib().mapKeySize(map) as number,
      valueSize: lib().mapValueSize(map) as number,
      maxEntries: lib().mapMaxEntries(map) as number,
      flags: lib().mapFlags(map) as number,
    };
  }

  load(): void {
    check(lib().objectLoad(this.#obj), (e) => nativeError('NM_ERR_BPF_LOAD', 'bpf_object__load', this.path, e));
  }

  program(name: string): BpfProgram {
    const prog = must(lib().findProgram(this.#obj, name), (e) =>
      nativeError('NM_ERR_BPF_LOAD', 'bpf_object__find_program_by_name', `${this.path}: ${name}`, e),
    );
    return new BpfProgram(name, prog);
  }

  /** After load: the map's fd, owned by this object (valid until close). */
  mapFd(name: string): number {
    return check(lib().mapFd(this.#map(name)), (e) => nativeError('NM_ERR_BPF_MAP', 'bpf_map__fd', `${this.path}: ${name}`, e));
  }

  /** Closes the object's fds; pinned maps, programs and links stay in the kernel. */
  close(): void {
    if (this.#obj === null) return;
    lib().objectClose(this.#obj);
    this.#obj = null;
  }

  #map(name: string): Ptr {
    return must(lib().findMap(this.#obj, name), (e) =>
      nativeError('NM_ERR_BPF_MAP', 'bpf_object__find_map_by_name', `${this.path}: ${name}`, e),
    );
  }
}

export class BpfProgram {
  readonly name: string;
  readonly #prog: Ptr;

  constructor(name: string, prog: Ptr) {
    this.name = name;
    this.#prog = prog;
  }

  /** The libbpf handle, for BpfLink.updateProgram. */
  get ptr(): Ptr {
    return this.#prog;
  }

  get fd(): number {
    return check(lib().programFd(this.#prog), (e) => nativeError('NM_ERR_BPF_LOAD', 'bpf_program__fd', this.name, e));
  }

  pin(path: string): void {
    check(lib().programPin(this.#prog, path), (e) => nativeError('NM_ERR_BPF_PIN', 'bpf_program__pin', `${this.name}, ${path}`, e));
  }

  attachCgroup(cgroupFd: number, cgroupPath: string): BpfLink {
    const link = must(lib().attachCgroup(this.#prog, cgroupFd), (e) =>
      nativeError('NM_ERR_BPF_ATTACH', 'bpf_program__attach_cgroup', `${this.name}, ${cgroupPath}`, e,
        errnoName(e) === 'EBADF' ? `${cgroupPath} is not a cgroup v2 directory` : undefined),
    );
    return new BpfLink(link);
  }

  /** An sk_lookup program on a network namespace; destroying the link detaches it. */
  attachNetns(netnsFd: number, what: string): BpfLink {
    const link = must(lib().attachNetns(this.#prog, netnsFd), (e) => nativeError('NM_ERR_BPF_ATTACH', 'bpf_program__attach_netns', `${this.name}, ${what}`, e));
    return new BpfLink(link);
  }
}

export class BpfLink {
  #link: Ptr;

  constructor(link: Ptr) {
    this.#link = link;
  }

  /** Detaches the program behind a pinned link even if another process still holds it. */
  static detachPinned(path: string): void {
    const link = new BpfLink(must(lib().linkOpen(path), (e) => nativeError('NM_ERR_BPF_PIN', 'bpf_link__open', path, e)));
    try {
      check(lib().linkDetach(link.#link), (e) => nativeError('NM_ERR_BPF_ATTACH', 'bpf_link__detach', path, e));
    } finally {
      link.destroy();
    }
  }

  /** Opens a pinned link (the link keeps its attachment; destroy() only closes the fd). */
  static openPinned(path: string): BpfLink {
    return new BpfLink(must(lib().linkOpen(path), (e) => nativeError('NM_ERR_BPF_PIN', 'bpf_link__open', path, e)));
  }

  /** Atomically swaps the program the link runs (BPF_LINK_UPDATE): no moment without one. */
  updateProgram(program: BpfProgram): void {
    check(lib().linkUpdateProgram(this.#link, program.ptr), (e) =>
      nativeError('NM_ERR_BPF_ATTACH', 'bpf_link__update_program', program.name, e));
  }

  get fd(): number {
    return check(lib().linkFd(this.#link), (e) => nativeError('NM_ERR_BPF_ATTACH', 'bpf_link__fd', 'link', e));
  }

  pin(path: string): void {
    check(lib().linkPin(this.#link, path), (e) => nativeError('NM_ERR_BPF_PIN', 'bpf_link__pin', path, e));
  }

  /** Frees the link and closes its fd; a pinned link stays attached. */
  destroy(): void {
    if (this.#link === null) return;
    lib().linkDestroy(this.#link);
    this.#link = null;
  }
}

/** Element access on a map fd; keys and values are the ABI's encoded buffers. */
export class MapHandle {
  readonly name: string;
  readonly fd: number;

  constructor(name: string, fd: number) {
    this.name = name;
    this.fd = fd;
  }

  lookup(key: Buffer, valueSize: number): Buffer | null {
    const value = Buffer.alloc(valueSize);
    const rc = lib().mapLookup(this.fd, key, value);
    if (rc === -ENOENT) return null;
    check(rc, (e) => nativeError('NM_ERR_BPF_MAP', 'bpf_map_lookup_elem', this.name, e));
    return value;
  }

  /**
   * A per-CPU map's value: the kernel copies one slot per possible CPU, each rounded up to
   * 8 bytes, so the buffer is sized for all of them.
   */
  lookupPerCpu(key: Buffer, valueSize: number): Buffer | null {
    return this.lookup(key, Math.ceil(valueSize / 8) * 8 * possibleCpus());
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    check(lib().mapUpdate(this.fd, key, value, flags), (e) => nativeError('NM_ERR_BPF_MAP', 'bpf_map_update_elem', this.name, e));
  }

  /** Returns false when the key was absent. */
  delete(key: Buffer): boolean {
    const rc = lib().mapDelete(this.fd, key);
    if (rc === -ENOENT) return false;
    check(rc, (e) => nativeError('NM_ERR_BPF_MAP', 'bpf_map_delete_elem', this.name, e));
    return true;
  }

  /** Keys present at the time of each step; a key deleted meanwhile restarts the walk, as in the kernel. */
  *keys(keySize: number): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(keySize);
      const rc = lib().mapNextKey(this.fd, prev, next);
      if (rc === -ENOENT) return;
      check(rc, (e) => nativeError('NM_ERR_BPF_MAP', 'bpf_map_get_next_key', this.name, e));
      yield next;
      prev = next;
    }
  }
}

export interface MapInfo { type: number; id: number; keySize: number; valueSize: number; maxEntries: number; flags: number; name: string }
export interface MapDef { type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }

/** Opens a pinned object (map, program or link) and returns its fd; the caller closes it. */
export function objGet(path: string): number {
  return check(lib().objGet(path), (e) => nativeError('NM_ERR_BPF_PIN', 'bpf_obj_get', path, e));
}
export interface LinkInfo { type: number; id: number; progId: number; cgroupId: bigint; attachType: number }

// Offsets in struct bpf_map_info / bpf_link_info (linux/bpf.h); the kernel
// accepts a shorter buffer and fills what fits, so only the leading fields are read.
function info(fd: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  check(lib().objGetInfo(fd, buf, len), (e) => nativeError('NM_ERR_BPF_MAP', 'bpf_obj_get_info_by_fd', `fd ${fd}`, e));
  return buf;
}

const cString = (buf: Buffer): string => buf.toString('latin1', 0, Math.max(0, buf.indexOf(0)));

export function mapInfo(fd: number): MapInfo {
  const b = info(fd, 40);
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    keySize: b.readUInt32LE(8),
    valueSize: b.readUInt32LE(12),
    maxEntries: b.readUInt32LE(16),
    flags: b.readUInt32LE(20),
    name: cString(b.subarray(24, 40)),
  };
}

/** struct bpf_prog_info: type, then id. */
export function progInfo(fd: number): { type: number; id: number } {
  const b = info(fd, 8);
  return { type: b.readUInt32LE(0), id: b.readUInt32LE(4) };
}

export function linkInfo(fd: number): LinkInfo {
  const b = info(fd, 32);
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    progId: b.readUInt32LE(8),
    cgroupId: b.readBigUInt64LE(16),
    attachType: b.readUInt32LE(24),
  };
}

let cpus: number | undefined;

/** CPUs the kernel may ever bring up (/sys/devices/system/cpu/possible), as per-CPU maps count them. */
export function possibleCpus(): number {
  if (cpus === undefined) {
    const rc = lib().numPossibleCpus();
    cpus = check(rc, (e) => nativeError('NM_ERR_BPF_MAP', 'libbpf_num_possible_cpus', 'cpus', e));
  }
  return cpus;
}

/** Whether the kernel can load programs of this type (needs the bpf() syscall and privileges). */
export function probeProgType(progType: number): boolean {
  const rc = lib().probeProgType(progType, null);
  if (rc < 0) throw nativeError('NM_ERR_STARTUP_BPF', 'libbpf_probe_bpf_prog_type', `type ${progType}`, rc);
  return rc === 1;
}
