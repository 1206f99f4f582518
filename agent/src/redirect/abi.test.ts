// Proves the TypeScript ABI matches bpf/nodemesh.h by compiling a probe against the header,
// and that the committed objects are what the sources build to.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import {
  DEST_KIND,
  FLOW_CLOSED,
  FLOW_OPEN,
  LAYOUT,
  MAX_ENTRIES,
  MTLS_MODE,
  PLAINTEXT_LISTENERS_MAP,
  PLAINTEXT_LISTENERS_MAX,
  STAT,
  decodeAddrKey,
  decodeConfig,
  decodeFlow,
  decodeMtls,
  decodeOrigin,
  decodePod,
  encodeConfig,
  encodeDestKey,
  encodeFlow,
  encodeListenerFd,
  encodeListenerKey,
  encodeMtls,
  encodeOrigin,
  encodePod,
  encodePodMtlsKey,
  encodePortMtlsKey,
  readIPv4,
  sumPerCpu,
  writeIPv4,
  type RawFlow,
} from './abi.js';
import { BpfObject } from '../../../native/libbpf.js';
import { SK_LOOKUP_OBJECT, repoRoot } from './objects.js';

const root = repoRoot();

function member(struct: string, field: string): string {
  return `printf("\\"${struct}.${field}\\": %zu,\\n", offsetof(struct ${struct}, ${field}));`;
}

/** Runs C against the header and returns what it printed as JSON. */
function probe(): Record<string, unknown> {
  const lines: string[] = [];
  for (const [struct, layout] of Object.entries(LAYOUT)) {
    lines.push(`printf("\\"${struct}\\": %zu,\\n", sizeof(struct ${struct}));`);
    for (const field of Object.keys(layout)) if (field !== 'size') lines.push(member(struct, field));
  }
  const src = `
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include "nodemesh.h"
static void hex(const char *name, const void *p, size_t n) {
  printf("\\"%s\\": \\"", name);
  for (size_t i = 0; i < n; i++) printf("%02x", ((const unsigned char *)p)[i]);
  printf("\\",\\n");
}
int main(void) {
  printf("{\\n");
  ${lines.join('\n  ')}
  printf("\\"NM_MAX_PODS\\": %d, \\"NM_MAX_DESTS\\": %d, \\"NM_MAX_PENDING\\": %d, \\"NM_MAX_FLOWS\\": %d,\\n",
         NM_MAX_PODS, NM_MAX_DESTS, NM_MAX_PENDING, NM_MAX_FLOWS);
  printf("\\"NM_DEST_SERVICE\\": %d, \\"NM_DEST_POD\\": %d, \\"NM_FLOW_OPEN\\": %d, \\"NM_FLOW_CLOSED\\": %d,\\n",
         NM_DEST_SERVICE, NM_DEST_POD, NM_FLOW_OPEN, NM_FLOW_CLOSED);
  printf("\\"NM_MTLS_PERMISSIVE\\": %d, \\"NM_MTLS_STRICT\\": %d, \\"NM_MTLS_PERMISSIVE_PROXIED\\": %d, \\"NM_MAX_PLAINTEXT_LISTENERS\\": %d,\\n",
         NM_MTLS_PERMISSIVE, NM_MTLS_STRICT, NM_MTLS_PERMISSIVE_PROXIED, NM_MAX_PLAINTEXT_LISTENERS);
  printf("\\"NM_MAX_MTLS_PORTS\\": %d, \\"NM_STAT_PLAINTEXT_REFUSED\\": %d, \\"NM_STAT_PROXY_ADMITTED\\": %d, \\"NM_STAT_COUNT\\": %d,\\n",
         NM_MAX_MTLS_PORTS, NM_STAT_PLAINTEXT_REFUSED, NM_STAT_PROXY_ADMITTED, NM_STAT_COUNT);
  /* How the kernel side fills the structs: addresses as on the wire, ports in host order. */
  struct nm_dest_key dest; memset(&dest, 0, sizeof dest);
  dest.ip = inet_addr("10.96.3.200"); dest.port = 8080;
  hex("dest_key", &dest, sizeof dest);
  struct nm_config cfg; memset(&cfg, 0, sizeof cfg);
  cfg.proxy_ip = inet_addr("192.168.1.2"); cfg.proxy_port = 15001;
  hex("config", &cfg, sizeof cfg);
  struct nm_pod pod; memset(&pod, 0, sizeof pod);
  pod.pod_ip = inet_addr("10.244.0.7"); pod.flags = 3;
  hex("pod", &pod, sizeof pod);
  struct nm_origin origin; memset(&origin, 0, sizeof origin);
  origin.dst_ip = inet_addr("10.96.0.10"); origin.dst_port = 53; origin.cgroup_id = 0x1122334455667788ULL;
  hex("origin", &origin, sizeof origin);
  struct nm_flow flow; memset(&flow, 0, sizeof flow);
  flow.dst_ip = inet_addr("1.2.3.4"); flow.dst_port = 443; flow.state = NM_FLOW_CLOSED;
  flow.cgroup_id = 7; flow.cookie = 8; flow.start_ns = 9; flow.end_ns = 10;
  flow.bytes_sent = 11; flow.bytes_received = 12; flow.packets_sent = 13; flow.packets_received = 14;
  hex("flow", &flow, sizeof flow);
  /* ingress keys nm_pod_mtls by iphdr.daddr and nm_port_mtls by (daddr, ntohs(tcphdr.dest)). */
  __u32 pod_mtls_key = inet_addr("10.244.1.5");
  hex("pod_mtls_key", &pod_mtls_key, sizeof pod_mtls_key);
  struct nm_dest_key port_mtls_key; memset(&port_mtls_key, 0, sizeof port_mtls_key);
  port_mtls_key.ip = inet_addr("10.244.1.5"); port_mtls_key.port = 9090;
  hex("port_mtls_key", &port_mtls_key, sizeof port_mtls_key);
  struct nm_mtls strict; memset(&strict, 0, sizeof strict); strict.mode = NM_MTLS_STRICT;
  hex("mtls_strict", &strict, sizeof strict);
  struct nm_mtls permissive; memset(&permissive, 0, sizeof permissive); permissive.mode = NM_MTLS_PERMISSIVE;
  hex("mtls_permissive", &permissive, sizeof permissive);
  struct nm_mtls proxied; memset(&proxied, 0, sizeof proxied); proxied.mode = NM_MTLS_PERMISSIVE_PROXIED;
  hex("mtls_proxied", &proxied, sizeof proxied);
  /* sk_lookup keys nm_plaintext_listeners by bpf_sk_lookup.local_ip4 (network order); user
   * space writes the listener's fd as a u64. */
  __u32 listener_key = inet_addr("10.244.2.9");
  hex("listener_key", &listener_key, sizeof listener_key);
  __u64 listener_fd = 37;
  hex("listener_fd", &listener_fd, sizeof listener_fd);
  /* user_port of struct bpf_sock_addr: the port in network order in the low 16 bits. */
  unsigned int user_port = htons(8080);
  hex("user_port", &user_port, sizeof user_port);
  printf("\\"end\\": 0}\\n");
  return 0;
}
`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodemesh-abi-'));
  try {
    fs.writeFileSync(path.join(dir, 'probe.c'), src);
    execFileSync('cc', ['-Wall', '-Werror', '-I', path.join(root, 'bpf'), '-o', path.join(dir, 'probe'), path.join(dir, 'probe.c')]);
    return JSON.parse(execFileSync(path.join(dir, 'probe'), { encoding: 'utf8' })) as Record<string, unknown>;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const c = probe();

test('every struct size and member offset matches bpf/nodemesh.h', () => {
  for (const [struct, layout] of Object.entries(LAYOUT)) {
    for (const [field, offset] of Object.entries(layout)) {
      const key = field === 'size' ? struct : `${struct}.${field}`;
      assert.equal(offset, c[key], `${key}: TypeScript says ${offset}, C says ${String(c[key])}`);
    }
  }
});

test('map capacities and enum values match bpf/nodemesh.h', () => {
  assert.equal(MAX_ENTRIES.nm_pods, c.NM_MAX_PODS);
  assert.equal(MAX_ENTRIES.nm_dests, c.NM_MAX_DESTS);
  assert.equal(MAX_ENTRIES.nm_pending, c.NM_MAX_PENDING);
  assert.equal(MAX_ENTRIES.nm_flows, c.NM_MAX_FLOWS);
  assert.equal(DEST_KIND.service, c.NM_DEST_SERVICE);
  assert.equal(DEST_KIND.pod, c.NM_DEST_POD);
  assert.equal(FLOW_OPEN, c.NM_FLOW_OPEN);
  assert.equal(FLOW_CLOSED, c.NM_FLOW_CLOSED);
  assert.equal(MAX_ENTRIES.nm_pod_mtls, c.NM_MAX_PODS);
  assert.equal(MAX_ENTRIES.nm_port_mtls, c.NM_MAX_MTLS_PORTS);
  assert.equal(MAX_ENTRIES.nm_stats, c.NM_STAT_COUNT);
  assert.equal(STAT.plaintextRefused, c.NM_STAT_PLAINTEXT_REFUSED);
  assert.equal(STAT.proxyAdmitted, c.NM_STAT_PROXY_ADMITTED);
  assert.equal(MTLS_MODE.permissive, c.NM_MTLS_PERMISSIVE);
  assert.equal(MTLS_MODE.strict, c.NM_MTLS_STRICT);
  assert.equal(MTLS_MODE['permissive-proxied'], c.NM_MTLS_PERMISSIVE_PROXIED);
  assert.equal(PLAINTEXT_LISTENERS_MAX, c.NM_MAX_PLAINTEXT_LISTENERS);
});

test('sk_lookup.bpf.o declares the plaintext listener sockhash the agent writes', () => {
  const obj = BpfObject.open(path.join(root, 'bpf', SK_LOOKUP_OBJECT));
  try {
    const BPF_MAP_TYPE_SOCKHASH = 18;
    assert.deepEqual(obj.mapDef(PLAINTEXT_LISTENERS_MAP), {
      type: BPF_MAP_TYPE_SOCKHASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: PLAINTEXT_LISTENERS_MAX,
      flags: 0,
    });
  } finally {
    obj.close();
  }
});

test('encoders produce the bytes C writes: addresses network order, ports host order', () => {
  assert.equal(encodeDestKey('10.96.3.200', 8080).toString('hex'), c.dest_key);
  assert.equal(encodeConfig('192.168.1.2', 15001).toString('hex'), c.config);
  assert.equal(encodePod('10.244.0.7', 3).toString('hex'), c.pod);
  assert.equal(encodeOrigin({ dstIP: '10.96.0.10', dstPort: 53, cgroupId: 0x1122334455667788n }).toString('hex'), c.origin);
  const flow: RawFlow = {
    dstIP: '1.2.3.4', dstPort: 443, state: FLOW_CLOSED, cgroupId: 7n, cookie: 8n, startNs: 9n, endNs: 10n,
    bytesSent: 11n, bytesReceived: 12n, packetsSent: 13n, packetsReceived: 14n,
  };
  assert.equal(encodeFlow(flow).toString('hex'), c.flow);
  assert.equal(encodePodMtlsKey('10.244.1.5').toString('hex'), c.pod_mtls_key);
  assert.equal(encodePortMtlsKey('10.244.1.5', 9090).toString('hex'), c.port_mtls_key);
  assert.equal(encodeMtls('strict').toString('hex'), c.mtls_strict);
  assert.equal(encodeMtls('permissive').toString('hex'), c.mtls_permissive);
  assert.equal(encodeMtls('permissive-proxied').toString('hex'), c.mtls_proxied);
  assert.equal(encodeListenerKey('10.244.2.9').toString('hex'), c.listener_key);
  assert.equal(encodeListenerFd(37).toString('hex'), c.listener_fd);
});

test('decoders read back what C wrote', () => {
  const buf = (key: string) => Buffer.from(c[key] as string, 'hex');
  assert.deepEqual(decodeAddrKey(buf('dest_key')), { ip: '10.96.3.200', port: 8080 });
  assert.deepEqual(decodeConfig(buf('config')), { proxyIP: '192.168.1.2', proxyPort: 15001 });
  assert.deepEqual(decodePod(buf('pod')), { podIP: '10.244.0.7', flags: 3 });
  assert.deepEqual(decodeOrigin(buf('origin')), { dstIP: '10.96.0.10', dstPort: 53, cgroupId: 0x1122334455667788n });
  const flow = decodeFlow(buf('flow'));
  assert.equal(flow.dstIP, '1.2.3.4');
  assert.equal(flow.dstPort, 443);
  assert.equal(flow.packetsReceived, 14n);
  assert.deepEqual(decodeMtls(buf('mtls_strict')), { mode: 'strict' });
  assert.deepEqual(decodeMtls(buf('mtls_permissive')), { mode: 'permissive' });
  assert.deepEqual(decodeMtls(buf('mtls_proxied')), { mode: 'permissive-proxied' });
});

test('a per-CPU counter is the sum of its 8-byte slots', () => {
  const slots = Buffer.alloc(3 * 8);
  slots.writeBigUInt64LE(2n, 0);
  slots.writeBigUInt64LE(5n, 16);
  assert.equal(sumPerCpu(slots), 7n);
});

test("bpf_sock_addr.user_port holds the port in network order, which connect4 swaps to the map's host order", () => {
  // 8080 = 0x1f90: on the wire 1f 90, so the u32 reads 0x0000901f on a little-endian host.
  const userPort = Buffer.from(c.user_port as string, 'hex').readUInt32LE(0);
  assert.equal(userPort, 0x901f);
  const low16 = userPort & 0xffff;
  assert.equal(((low16 & 0xff) << 8) | (low16 >> 8), 8080);
});

test('IPv4 text round-trips through network order and rejects what is not IPv4', () => {
  const b = Buffer.alloc(4);
  writeIPv4(b, 0, '127.0.0.42');
  assert.deepEqual([...b], [127, 0, 0, 42]);
  assert.equal(readIPv4(b, 0), '127.0.0.42');
  assert.throws(() => writeIPv4(b, 0, '::1'), /not an IPv4 address/);
  assert.throws(() => writeIPv4(b, 0, '10.0.0.256'), /not an IPv4 address/);
});

test('the committed bpf/*.bpf.o are byte-identical to a fresh build of their sources', () => {
  execFileSync(path.join(root, 'scripts', 'build-bpf.sh'), ['--check'], { stdio: 'pipe' });
});
