// The TypeScript side of bpf/nodemesh.h: map names, struct sizes and offsets, and the
// encoders the agent uses to read and write the capture maps. abi.test.ts checks every
// constant here against the C header, so a change on one side alone fails the tests.
import net from 'node:net';
import os from 'node:os';

// Structs hold host-order integers next to network-order addresses; the readers below use
// little-endian accessors, which is the host order on every platform the agent ships for.
if (os.endianness() !== 'LE') throw new Error('nodemesh: the BPF map ABI is implemented for little-endian hosts only');

export const MAP_NAMES = [
  'nm_config',
  'nm_pods',
  'nm_dests',
  'nm_pending',
  'nm_flows',
  'nm_pod_mtls',
  'nm_port_mtls',
  'nm_stats',
] as const;
export type MapName = (typeof MAP_NAMES)[number];

export const MAX_ENTRIES: Readonly<Record<MapName, number>> = {
  nm_config: 1,
  nm_pods: 16384,
  nm_dests: 65536,
  nm_pending: 65536,
  nm_flows: 65536,
  nm_pod_mtls: 16384,
  nm_port_mtls: 65536,
  nm_stats: 2,
};

/** The sockhash of the node proxy's plaintext listeners (sk_lookup.bpf.c): one per agent run,
 * never pinned, so not among MAP_NAMES. */
export const PLAINTEXT_LISTENERS_MAP = 'nm_plaintext_listeners';
export const PLAINTEXT_LISTENERS_MAX = 16384;

export const DEST_KIND = { service: 1, pod: 2 } as const;
export type DestKind = keyof typeof DEST_KIND;
export const FLOW_OPEN = 1;
export const FLOW_CLOSED = 2;

/** nm_stats indexes (NM_STAT_*): per-CPU u64 counters. */
export const STAT = { plaintextRefused: 0, proxyAdmitted: 1 } as const;

/** Struct layouts: size and member offsets in bytes, as in bpf/nodemesh.h. */
export const LAYOUT = {
  nm_config: { size: 8, proxy_ip: 0, proxy_port: 4, pad: 6 },
  nm_pod: { size: 8, pod_ip: 0, flags: 4 },
  nm_dest_key: { size: 8, ip: 0, port: 4, pad: 6 },
  nm_dest: { size: 8, kind: 0, pad: 4 },
  nm_origin: { size: 16, dst_ip: 0, dst_port: 4, pad: 6, cgroup_id: 8 },
  nm_flow_key: { size: 8, ip: 0, port: 4, pad: 6 },
  nm_flow: {
    size: 72,
    dst_ip: 0,
    dst_port: 4,
    state: 6,
    cgroup_id: 8,
    cookie: 16,
    start_ns: 24,
    end_ns: 32,
    bytes_sent: 40,
    bytes_received: 48,
    packets_sent: 56,
    packets_received: 64,
  },
  nm_mtls: { size: 8, mode: 0, pad: 4 },
} as const;

/** Sizes of the scalar keys (nm_config and nm_stats index, nm_pod_mtls IP, nm_pods cgroup id, nm_pending cookie). */
export const U32_SIZE = 4;
export const U64_SIZE = 8;

/** Writes a dotted IPv4 address as the kernel keeps it (network order) at `offset`. */
export function writeIPv4(buf: Buffer, offset: number, ip: string): void {
  if (!net.isIPv4(ip)) throw new TypeError(`not an IPv4 address: "${ip}"`);
  const parts = ip.split('.').map(Number);
  for (let i = 0; i < 4; i++) buf[offset + i] = parts[i] as number;
}

export function readIPv4(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

/** `ip:port` in the way the kernel's u32 (network order) and host-order u16 compare. */
function addrKey(ip: string, port: number): Buffer {
  const b = Buffer.alloc(8);
  writeIPv4(b, 0, ip);
  b.writeUInt16LE(port, 4);
  return b;
}

export function encodeConfig(proxyIP: string, proxyPort: number): Buffer {
  return addrKey(proxyIP, proxyPort);
}

export function decodeConfig(b: Buffer): { proxyIP: string; proxyPort: number } {
  return { proxyIP: readIPv4(b, LAYOUT.nm_config.proxy_ip), proxyPort: b.readUInt16LE(LAYOUT.nm_config.proxy_port) };
}

export function encodeU32(n: number): Buffer {
  const b = Buffer.alloc(U32_SIZE);
  b.writeUInt32LE(n);
  return b;
}

export function encodeU64(n: bigint): Buffer {
  const b = Buffer.alloc(U64_SIZE);
  b.writeBigUInt64LE(n);
  return b;
}

export function encodePod(podIP: string, flags = 0): Buffer {
  const b = Buffer.alloc(LAYOUT.nm_pod.size);
  writeIPv4(b, LAYOUT.nm_pod.pod_ip, podIP);
  b.writeUInt32LE(flags, LAYOUT.nm_pod.flags);
  return b;
}

export function decodePod(b: Buffer): { podIP: string; flags: number } {
  return { podIP: readIPv4(b, LAYOUT.nm_pod.pod_ip), flags: b.readUInt32LE(LAYOUT.nm_pod.flags) };
}

export const encodeDestKey = addrKey;
/** nm_port_mtls key: the pod IP and one of its ports, laid out as struct nm_dest_key. */
export const encodePortMtlsKey = addrKey;
export const encodeFlowKey = addrKey;

export function decodeAddrKey(b: Buffer): { ip: string; port: number } {
  return { ip: readIPv4(b, 0), port: b.readUInt16LE(4) };
}

export function encodeDest(kind: DestKind): Buffer {
  const b = Buffer.alloc(LAYOUT.nm_dest.size);
  b.writeUInt32LE(DEST_KIND[kind], LAYOUT.nm_dest.kind);
  return b;
}

export function decodeDestKind(b: Buffer): DestKind | undefined {
  const kind = b.readUInt32LE(LAYOUT.nm_dest.kind);
  return kind === DEST_KIND.service ? 'service' : kind === DEST_KIND.pod ? 'pod' : undefined;
}

export interface Origin {
  dstIP: string;
  dstPort: number;
  cgroupId: bigint;
}

export function encodeOrigin(o: Origin): Buffer {
  const L = LAYOUT.nm_origin;
  const b = Buffer.alloc(L.size);
  writeIPv4(b, L.dst_ip, o.dstIP);
  b.writeUInt16LE(o.dstPort, L.dst_port);
  b.writeBigUInt64LE(o.cgroupId, L.cgroup_id);
  return b;
}

export function decodeOrigin(b: Buffer): Origin {
  const L = LAYOUT.nm_origin;
  return { dstIP: readIPv4(b, L.dst_ip), dstPort: b.readUInt16LE(L.dst_port), cgroupId: b.readBigUInt64LE(L.cgroup_id) };
}

/** nm_flows value as stored: times are CLOCK_MONOTONIC nanoseconds, 0 = not yet. */
export interface RawFlow {
  dstIP: string;
  dstPort: number;
  state: number;
  cgroupId: bigint;
  cookie: bigint;
  startNs: bigint;
  endNs: bigint;
  bytesSent: bigint;
  bytesReceived: bigint;
  packetsSent: bigint;
  packetsReceived: bigint;
}

export function encodeFlow(f: RawFlow): Buffer {
  const L = LAYOUT.nm_flow;
  const b = Buffer.alloc(L.size);
  writeIPv4(b, L.dst_ip, f.dstIP);
  b.writeUInt16LE(f.dstPort, L.dst_port);
  b.writeUInt16LE(f.state, L.state);
  b.writeBigUInt64LE(f.cgroupId, L.cgroup_id);
  b.writeBigUInt64LE(f.cookie, L.cookie);
  b.writeBigUInt64LE(f.startNs, L.start_ns);
  b.writeBigUInt64LE(f.endNs, L.end_ns);
  b.writeBigUInt64LE(f.bytesSent, L.bytes_sent);
  b.writeBigUInt64LE(f.bytesReceived, L.bytes_received);
  b.writeBigUInt64LE(f.packetsSent, L.packets_sent);
  b.writeBigUInt64LE(f.packetsReceived, L.packets_received);
  return b;
}

export function decodeFlow(b: Buffer): RawFlow {
  const L = LAYOUT.nm_flow;
  return {
    dstIP: readIPv4(b, L.dst_ip),
    dstPort: b.readUInt16LE(L.dst_port),
    state: b.readUInt16LE(L.state),
    cgroupId: b.readBigUInt64LE(L.cgroup_id),
    cookie: b.readBigUInt64LE(L.cookie),
    startNs: b.readBigUInt64LE(L.start_ns),
    endNs: b.readBigUInt64LE(L.end_ns),
    bytesSent: b.readBigUInt64LE(L.bytes_sent),
    bytesReceived: b.readBigUInt64LE(L.bytes_received),
    packetsSent: b.readBigUInt64LE(L.packets_sent),
    packetsReceived: b.readBigUInt64LE(L.packets_received),
  };
}

/** nm_pod_mtls key: the pod IP as a u32 in network order. */
export function encodePodMtlsKey(podIP: string): Buffer {
  const b = Buffer.alloc(U32_SIZE);
  writeIPv4(b, 0, podIP);
  return b;
}

/**
 * nm_mtls.mode (NM_MTLS_*): what a pod port accepts from anyone but the node proxy.
 * - permissive: plaintext, through the proxy's plaintext listener when there is one, else directly;
 * - strict: nothing (mTLS only, checked by the proxy);
 * - permissive-proxied: plaintext only through the proxy's plaintext listener (an authorization
 *   policy applies), refused when there is none.
 */
export const MTLS_MODE = { permissive: 0, strict: 1, 'permissive-proxied': 2 } as const;
export type KernelMtlsMode = keyof typeof MTLS_MODE;

export function encodeMtls(mode: KernelMtlsMode): Buffer {
  const b = Buffer.alloc(LAYOUT.nm_mtls.size);
  b.writeUInt32LE(MTLS_MODE[mode], LAYOUT.nm_mtls.mode);
  return b;
}

export function decodeMtls(b: Buffer): { mode: KernelMtlsMode | undefined } {
  const n = b.readUInt32LE(LAYOUT.nm_mtls.mode);
  return { mode: (Object.keys(MTLS_MODE) as KernelMtlsMode[]).find((m) => MTLS_MODE[m] === n) };
}

/** nm_plaintext_listeners key: the pod IP as a u32 in network order. */
export const encodeListenerKey = encodePodMtlsKey;

/** nm_plaintext_listeners value on update: the listening socket's fd as a u64. */
export function encodeListenerFd(fd: number): Buffer {
  return encodeU64(BigInt(fd));
}

/** A per-CPU u64 counter as the kernel returns it (one 8-byte slot per possible CPU), summed. */
export function sumPerCpu(b: Buffer): bigint {
  let sum = 0n;
  for (let off = 0; off + U64_SIZE <= b.length; off += U64_SIZE) sum += b.readBigUInt64LE(off);
  return sum;
}
