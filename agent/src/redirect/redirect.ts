// The agent's handle on the eBPF capture: loads and attaches connect4 + sockops (capture)
// and ingress (PeerAuthentication STRICT) to the cgroup root, keeps the maps equal to the
// configuration, and reads back each redirected connection's original destination and
// counters for the proxy and `nodemesh flows`.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import { BpfLink, BpfObject, BpfProgram, MapHandle, linkInfo, mapInfo, objGet } from '../../../native/libbpf.js';
import {
  FLOW_OPEN,
  LAYOUT,
  MAP_NAMES,
  STAT,
  U32_SIZE,
  U64_SIZE,
  decodeAddrKey,
  decodeFlow,
  encodeConfig,
  encodeDest,
  encodeDestKey,
  encodeFlowKey,
  encodeMtls,
  encodePod,
  encodePodMtlsKey,
  encodePortMtlsKey,
  encodeU32,
  encodeU64,
  decodeMtls,
  sumPerCpu,
  type DestKind,
  type KernelMtlsMode,
  type MapName,
} from './abi.js';
import { CONNECT4_OBJECT, INGRESS_OBJECT, SOCKOPS_OBJECT, defaultObjDir } from './objects.js';
import { PinLayout, ensureBpffs } from './pins.js';
import { cgroupId } from './prerequisites.js';

export interface RedirectOptions {
  /** Pin directory on bpffs, e.g. /sys/fs/bpf/nodemesh/<node>. */
  bpffsDir: string;
  /** cgroup v2 directory whose whole subtree is captured. */
  cgroupRoot: string;
  /** Where connect4.bpf.o, sockops.bpf.o and ingress.bpf.o are; default: the repo's bpf/. */
  objDir?: string;
  log: Logger;
}

export interface MeshDestination {
  ip: string;
  port: number;
  kind: DestKind;
}

/**
 * A local pod's PeerAuthentication as the kernel enforces it: `mode` for every port of the
 * pod, unless `ports` names the port (see MTLS_MODE for what each mode lets in).
 */
export interface PodMtls {
  mode: KernelMtlsMode;
  ports: ReadonlyMap<number, KernelMtlsMode>;
}

export interface FlowOrigin {
  dstIP: string;
  dstPort: number;
  cgroupId: bigint;
  cookie: bigint;
}

/** One nm_flows entry, from the pod's point of view, times in wall-clock ms. */
export interface FlowRecord extends FlowOrigin {
  /** The pod socket's local address (the proxy's view of the peer). */
  ip: string;
  port: number;
  startMs: number;
  endMs?: number;
  open: boolean;
  bytesSent: number;
  bytesReceived: number;
  packetsSent: number;
  packetsReceived: number;
}

export interface RedirectStatus {
  pinDir: string;
  programs: Array<{ name: string; id: number; attachType: string; cgroup: string }>;
  maps: Array<{ name: string; entries: number; maxEntries: number }>;
  /** Connection attempts (SYNs, retransmissions included) to STRICT ports dropped because they did not come from the proxy. */
  plaintextRefused: number;
  /** Connection attempts (SYNs) to STRICT ports admitted because they came from the proxy. */
  proxyAdmitted: number;
}

interface Attachment {
  name: string;
  attachType: string;
  /** enum bpf_attach_type, as bpf_link_info reports it. */
  kernelAttachType: number;
  program: string;
  object: string;
}

const ATTACHMENTS: readonly Attachment[] = [
  { name: 'connect4', attachType: 'cgroup/connect4', kernelAttachType: 10, program: 'nm_connect4', object: CONNECT4_OBJECT },
  { name: 'sockops', attachType: 'sockops', kernelAttachType: 3, program: 'nm_sockops', object: SOCKOPS_OBJECT },
  { name: 'ingress', attachType: 'cgroup_skb/ingress', kernelAttachType: 0, program: 'nm_ingress', object: INGRESS_OBJECT },
];

const KEY_SIZE: Readonly<Record<MapName, number>> = {
  nm_config: U32_SIZE,
  nm_pods: U64_SIZE,
  nm_dests: LAYOUT.nm_dest_key.size,
  nm_pending: U64_SIZE,
  nm_flows: LAYOUT.nm_flow_key.size,
  nm_pod_mtls: U32_SIZE,
  nm_port_mtls: LAYOUT.nm_dest_key.size,
  nm_stats: U32_SIZE,
};

/** How much each mode keeps out, for ordering map writes; an absent entry lets in what permissive does. */
const MTLS_RANK: Readonly<Record<KernelMtlsMode, number>> = { permissive: 0, 'permissive-proxied': 1, strict: 2 };

/** What one map must change to equal the desired content. */
interface MapPlan {
  name: MapName;
  stale: Buffer[];
  writes: Array<[Buffer, Buffer]>;
}

export class Redirect {
  readonly #pins: PinLayout;
  readonly #cgroupRoot: string;
  readonly #objects: BpfObject[];
  readonly #links: Map<Attachment, BpfLink>;
  readonly #maps: Record<MapName, MapHandle>;
  readonly #log: Logger;

  private constructor(pins: PinLayout, cgroupRoot: string, objects: BpfObject[], links: Map<Attachment, BpfLink>, log: Logger) {
    this.#pins = pins;
    this.#cgroupRoot = cgroupRoot;
    this.#objects = objects;
    this.#links = links;
    this.#log = log;
    // Every object points its maps at the same pins, so the first object's fds serve all.
    const owner = objects[0] as BpfObject;
    this.#maps = Object.fromEntries(MAP_NAMES.map((n) => [n, new MapHandle(n, owner.mapFd(n))])) as Record<MapName, MapHandle>;
  }

  /**
   * Loads the programs and attaches them to `cgroupRoot`. When a previous run left
   * compatible pins (same map definitions, links on the same cgroup), the new programs load
   * onto the pinned maps (their content survives) and replace the old ones on the pinned
   * links atomically, so enrolled pods stay captured and STRICT stays enforced throughout.
   * Otherwise the pins are removed and everything is created afresh.
   */
  static async open(opts: RedirectOptions): Promise<Redirect> {
    const pins = new PinLayout(opts.bpffsDir);
    ensureBpffs(opts.bpffsDir);
    const objDir = opts.objDir ?? defaultObjDir();

    if (fs.existsSync(opts.bpffsDir)) {
      const objects = openObjects(objDir);
      const previous = reusablePins(pins, objects, opts.cgroupRoot);
      if (typeof previous === 'string') {
        for (const obj of objects) obj.close();
        opts.log.warn({ pinDir: opts.bpffsDir, reason: previous }, 'previous eBPF pins not reusable: detaching and recreating them (pods are not captured for a moment)');
      } else {
        try {
          const redirect = Redirect.#replace(pins, opts, objects, previous);
          opts.log.info({ cgroupRoot: opts.cgroupRoot, pinDir: opts.bpffsDir, objDir }, 'eBPF capture replaced in place (pinned maps and links reused)');
          return redirect;
        } catch (err) {
          // The previous programs stay attached: pods remain captured by the old version.
          for (const link of previous.values()) link.destroy();
          for (const obj of objects) obj.close();
          throw err;
        }
      }
    }

    // A previous run's links stay attached on purpose; replace them rather than stack a
    // second set of programs on the same cgroup.
    pins.removeAll();
    pins.create();

    const objects: BpfObject[] = [];
    const links = new Map<Attachment, BpfLink>();
    const cgroupFd = openCgroup(opts.cgroupRoot);
    try {
      for (const a of ATTACHMENTS) {
        const obj = BpfObject.open(path.join(objDir, a.object));
        objects.push(obj);
        for (const name of MAP_NAMES) obj.setMapPinPath(name, pins.map(name));
        obj.load();
        const program = obj.program(a.program);
        program.pin(pins.program(a.name));
        const link = program.attachCgroup(cgroupFd, opts.cgroupRoot);
        links.set(a, link);
        link.pin(pins.link(a.name));
      }
    } catch (err) {
      for (const link of links.values()) link.destroy();
      for (const obj of objects) obj.close();
      pins.removeAll();
      throw err;
    } finally {
      fs.closeSync(cgroupFd);
    }
    const redirect = new Redirect(pins, opts.cgroupRoot, objects, links, opts.log);
    opts.log.info({ cgroupRoot: opts.cgroupRoot, pinDir: opts.bpffsDir, objDir }, 'eBPF capture attached');
    return redirect;
  }

  /** Loads `objects` onto the pinned maps and swaps each pinned link's program for the new one. */
  static #replace(pins: PinLayout, opts: RedirectOptions, objects: BpfObject[], links: Map<Attachment, BpfLink>): Redirect {
    const programs = ATTACHMENTS.map((a, i) => {
      const obj = objects[i] as BpfObject;
      // libbpf reuses a map whose pin exists and matches the definition (checked above).
      for (const name of MAP_NAMES) obj.setMapPinPath(name, pins.map(name));
      obj.load();
      return obj.program(a.program);
    });
    ATTACHMENTS.forEach((a, i) => {
      const program = programs[i] as BpfProgram;
      (links.get(a) as BpfLink).updateProgram(program);
      fs.rmSync(pins.program(a.name), { force: true });
      program.pin(pins.program(a.name));
    });
    return new Redirect(pins, opts.cgroupRoot, objects, links, opts.log);
  }

  /** Detaches and unpins everything a run left under `bpffsDir`; idempotent. */
  static cleanup(bpffsDir: string): void {
    new PinLayout(bpffsDir).removeAll();
  }

  setProxy(ip: string, port: number): void {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new NodemeshError('NM_ERR_BPF_MAP', `proxy port must be 1..65535, got ${port}`);
    }
    this.#maps.nm_config.update(encodeU32(0), encodeConfig(ip, port));
  }

  setPods(pods: ReadonlyMap<bigint, { podIP: string }>): void {
    const want = new Map<string, [Buffer, Buffer]>();
    for (const [id, pod] of pods) {
      const key = encodeU64(id);
      want.set(key.toString('hex'), [key, encodePod(pod.podIP)]);
    }
    this.#reconcile('nm_pods', want, LAYOUT.nm_pod.size);
  }

  setDests(dests: readonly MeshDestination[]): void {
    const want = new Map<string, [Buffer, Buffer]>();
    for (const d of dests) {
      const key = encodeDestKey(d.ip, d.port);
      want.set(key.toString('hex'), [key, encodeDest(d.kind)]);
    }
    this.#reconcile('nm_dests', want, LAYOUT.nm_dest.size);
  }

  /**
   * Converges nm_pod_mtls and nm_port_mtls to `pods` (keyed by pod IP); pods absent are not
   * enforced. Tightening writes (towards STRICT: permissive < permissive-proxied < strict) go
   * first and loosening ones and deletions last, so a port never lets in, in between, more
   * than both its old and its new mode allow; a port that ends looser may refuse for the
   * microseconds in between, which a SYN retry covers. Only new connections are judged:
   * plaintext connections accepted before a port became STRICT keep running until they close.
   */
  setMtls(pods: ReadonlyMap<string, PodMtls>): void {
    const podWant = new Map<string, [Buffer, Buffer]>();
    const portWant = new Map<string, [Buffer, Buffer]>();
    for (const [podIP, mtls] of pods) {
      const key = encodePodMtlsKey(podIP);
      podWant.set(key.toString('hex'), [key, encodeMtls(mtls.mode)]);
      for (const [port, mode] of mtls.ports) {
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          throw new NodemeshError('NM_ERR_BPF_MAP', `PeerAuthentication port of pod ${podIP} must be 1..65535, got ${port}`);
        }
        const portKey = encodePortMtlsKey(podIP, port);
        portWant.set(portKey.toString('hex'), [portKey, encodeMtls(mode)]);
      }
    }
    const plans = [this.#plan('nm_pod_mtls', podWant, LAYOUT.nm_mtls.size), this.#plan('nm_port_mtls', portWant, LAYOUT.nm_mtls.size)];
    const rank = (value: Buffer | null) => MTLS_RANK[(value && decodeMtls(value).mode) ?? 'permissive'];
    const tightens = (name: MapName) => ([key, value]: [Buffer, Buffer]) => rank(value) > rank(this.#maps[name].lookup(key, LAYOUT.nm_mtls.size));
    const split = plans.map((p) => ({ p, first: p.writes.filter(tightens(p.name)) }));
    for (const { p, first } of split) this.#apply({ name: p.name, stale: [], writes: first });
    for (const { p, first } of split) this.#apply({ name: p.name, stale: p.stale, writes: p.writes.filter((w) => !first.includes(w)) });
  }

  /**
   * The original destination of a connection the proxy accepted from `ip:port`. Only open
   * flows answer: a closed record whose port is reused by an unredirected connection must
   * not lend it a pod's identity.
   */
  lookupOrigin(ip: string, port: number): FlowOrigin | null {
    const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(v4)) return null;
    const value = this.#maps.nm_flows.lookup(encodeFlowKey(v4, port), LAYOUT.nm_flow.size);
    if (!value) return null;
    const flow = decodeFlow(value);
    if (flow.state !== FLOW_OPEN) return null;
    return { dstIP: flow.dstIP, dstPort: flow.dstPort, cgroupId: flow.cgroupId, cookie: flow.cookie };
  }

  flows(): FlowRecord[] {
    // bpf_ktime_get_ns and process.hrtime both read CLOCK_MONOTONIC.
    const wallMinusMonoMs = Date.now() - Number(process.hrtime.bigint() / 1000n) / 1000;
    const toWall = (ns: bigint) => wallMinusMonoMs + Number(ns / 1000n) / 1000;
    const records: FlowRecord[] = [];
    const map = this.#maps.nm_flows;
    for (const key of map.keys(LAYOUT.nm_flow_key.size)) {
      const value = map.lookup(key, LAYOUT.nm_flow.size);
      if (!value) continue; // closed and evicted while we walked
      const f = decodeFlow(value);
      const local = decodeAddrKey(key);
      records.push({
        ip: local.ip,
        port: local.port,
        dstIP: f.dstIP,
        dstPort: f.dstPort,
        cgroupId: f.cgroupId,
        cookie: f.cookie,
        startMs: toWall(f.startNs),
        ...(f.endNs > 0n ? { endMs: toWall(f.endNs) } : {}),
        open: f.state === FLOW_OPEN,
        bytesSent: Number(f.bytesSent),
        bytesReceived: Number(f.bytesReceived),
        packetsSent: Number(f.packetsSent),
        packetsReceived: Number(f.packetsReceived),
      });
    }
    return records;
  }

  status(): RedirectStatus {
    const programs = [...this.#links].map(([a, link]) => {
      const info = linkInfo(link.fd);
      return { name: a.name, id: info.progId, attachType: a.attachType, cgroup: this.#cgroupRoot };
    });
    const maps = MAP_NAMES.map((name) => {
      const handle = this.#maps[name];
      let entries = 0;
      for (const _ of handle.keys(KEY_SIZE[name])) entries++;
      return { name, entries, maxEntries: mapInfo(handle.fd).maxEntries };
    });
    const stat = (index: number) => {
      const value = this.#maps.nm_stats.lookupPerCpu(encodeU32(index), U64_SIZE);
      return value ? Number(sumPerCpu(value)) : 0;
    };
    return {
      pinDir: this.#pins.dir,
      programs,
      maps,
      plaintextRefused: stat(STAT.plaintextRefused),
      proxyAdmitted: stat(STAT.proxyAdmitted),
    };
  }

  /** Closes fds only: pins and attachments stay so pods remain captured until the next start. */
  close(): void {
    for (const link of this.#links.values()) link.destroy();
    for (const obj of this.#objects) obj.close();
    this.#log.info({ pinDir: this.#pins.dir }, 'eBPF capture left attached (pinned)');
  }

  /** Writes only what differs, so a reload does not churn entries the kernel is reading. */
  #reconcile(name: MapName, want: Map<string, [Buffer, Buffer]>, valueSize: number): void {
    this.#apply(this.#plan(name, want, valueSize));
  }

  #plan(name: MapName, want: Map<string, [Buffer, Buffer]>, valueSize: number): MapPlan {
    const map = this.#maps[name];
    const stale: Buffer[] = [];
    for (const key of map.keys(KEY_SIZE[name])) if (!want.has(key.toString('hex'))) stale.push(key);
    const writes: Array<[Buffer, Buffer]> = [];
    for (const [key, value] of want.values()) {
      const have = map.lookup(key, valueSize);
      if (!have || !have.equals(value)) writes.push([key, value]);
    }
    return { name, stale, writes };
  }

  #apply({ name, stale, writes }: MapPlan): void {
    const map = this.#maps[name];
    for (const key of stale) map.delete(key);
    for (const [key, value] of writes) map.update(key, value);
    if (stale.length > 0 || writes.length > 0) this.#log.debug({ map: name, removed: stale.length, written: writes.length }, 'capture map updated');
  }
}

/** enum bpf_link_type: BPF_LINK_TYPE_CGROUP. */
const BPF_LINK_TYPE_CGROUP = 3;

function openObjects(objDir: string): BpfObject[] {
  const objects: BpfObject[] = [];
  try {
    for (const a of ATTACHMENTS) objects.push(BpfObject.open(path.join(objDir, a.object)));
  } catch (err) {
    for (const obj of objects) obj.close();
    throw err;
  }
  return objects;
}

/**
 * The previous run's pinned links, opened, when its pins can be taken over as they are:
 * every map pinned with the definition the new objects carry and every link pinned and
 * attached to `cgroupRoot` with the right attach type. Otherwise why not.
 */
function reusablePins(pins: PinLayout, objects: BpfObject[], cgroupRoot: string): Map<Attachment, BpfLink> | string {
  for (const name of MAP_NAMES) {
    const pin = pins.map(name);
    if (!fs.existsSync(pin)) return `map ${name} is not pinned`;
    const fd = objGet(pin);
    let have;
    try {
      have = mapInfo(fd);
    } finally {
      fs.closeSync(fd);
    }
    for (const obj of objects) {
      const want = obj.mapDef(name);
      for (const field of ['type', 'keySize', 'valueSize', 'maxEntries', 'flags'] as const) {
        if (have[field] !== want[field]) return `map ${name} changed: pinned ${field} ${have[field]}, ${path.basename(obj.path)} wants ${want[field]}`;
      }
    }
  }
  const links = new Map<Attachment, BpfLink>();
  const fail = (why: string) => {
    for (const link of links.values()) link.destroy();
    return why;
  };
  const cgroup = cgroupId(cgroupRoot);
  for (const a of ATTACHMENTS) {
    const pin = pins.link(a.name);
    if (!fs.existsSync(pin)) return fail(`link ${a.name} is not pinned`);
    const link = BpfLink.openPinned(pin);
    links.set(a, link);
    const info = linkInfo(link.fd);
    if (info.type !== BPF_LINK_TYPE_CGROUP || info.attachType !== a.kernelAttachType) return fail(`link ${a.name} is not a ${a.attachType} cgroup link`);
    if (info.cgroupId !== cgroup) return fail(`link ${a.name} is attached to another cgroup (id ${info.cgroupId}, or detached) than ${cgroupRoot}`);
  }
  return links;
}

function openCgroup(dir: string): number {
  try {
    return fs.openSync(dir, 'r');
  } catch (err) {
    throw new NodemeshError('NM_ERR_STARTUP_CGROUP2', `cannot open cgroup root ${dir}: ${(err as Error).message}`, { cause: err });
  }
}
