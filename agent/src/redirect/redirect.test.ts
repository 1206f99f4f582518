// Runs the real capture as root: programs attached to a temporary cgroup, processes moved
// into enrolled and unenrolled child cgroups, connections observed at real listeners.
// PeerAuthentication runs on the loopback: a server in the pod cgroup on 127.0.0.1 plays the
// pod, clients bound to 127.0.0.2 play the node proxy and to 127.0.0.3 anyone else (the
// kernel runs cgroup_skb ingress for loopback deliveries as for veth ones: from sk_filter).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { KernelMtlsMode } from './abi.js';
import { Redirect, cgroupId, findCgroup2Mount, type FlowOrigin } from './index.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root (BPF programs, cgroups, bpffs): run the tests as root' : false;
if (notRoot) console.log(`# redirect.test: skipped: ${notRoot}`);

const log = pino({ level: 'silent' });
const tag = crypto.randomBytes(4).toString('hex');
const PAYLOAD = 100_000;

interface Accepted {
  remoteAddress: string;
  remotePort: number;
  origin: FlowOrigin | null;
  bytes: number;
}

/** A listener that records who connected and how much it read, and answers "ok" at the end. */
async function listen(host: string, onAccept?: (s: net.Socket) => FlowOrigin | null) {
  const accepted: Accepted[] = [];
  const server = net.createServer((socket) => {
    const a: Accepted = {
      remoteAddress: socket.remoteAddress as string,
      remotePort: socket.remotePort as number,
      origin: onAccept ? onAccept(socket) : null,
      bytes: 0,
    };
    accepted.push(a);
    socket.on('data', (d) => (a.bytes += d.length));
    socket.on('end', () => socket.end('ok'));
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, accepted, port: (server.address() as net.AddressInfo).port };
}

const children = new Set<ReturnType<typeof spawn>>();

/** Moves a shell into `cgroup` before exec'ing node, so the connect() happens inside it. */
function connectFrom(cgroup: string, host: string, port: number): Promise<string> {
  const script = `
    const s = require('net').connect(+process.env.PORT, process.env.HOST, () => s.end(Buffer.alloc(+process.env.N, 120)));
    let reply = '';
    s.on('data', (d) => (reply += d));
    s.on('close', () => { console.log(reply); process.exit(0); });
    s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
  const child = spawn('sh', ['-c', 'echo $$ > "$CG/cgroup.procs" && exec "$NODE" -e "$SCRIPT"'], {
    env: { CG: cgroup, NODE: process.execPath, SCRIPT: script, HOST: host, PORT: String(port), N: String(PAYLOAD) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`client in ${cgroup} exited ${code}`));
    }),
  );
}

/** A server inside `cgroup` (so its listening socket belongs to it) answering "ok" to each client. */
async function serveFrom(cgroup: string, host: string): Promise<number> {
  const script = `
    const srv = require('net').createServer((s) => { s.on('data', () => {}); s.on('end', () => s.end('ok')); s.on('error', () => {}); });
    srv.listen(0, process.env.HOST, () => console.log(srv.address().port));`;
  const child = spawn('sh', ['-c', 'echo $$ > "$CG/cgroup.procs" && exec "$NODE" -e "$SCRIPT"'], {
    env: { CG: cgroup, NODE: process.execPath, SCRIPT: script, HOST: host },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.on('exit', (code) => reject(new Error(`server in ${cgroup} exited ${code}`)));
  });
}

/** Connects to 127.0.0.1:port from `localAddress` (default: the kernel's choice); "ok", "timeout" or an error code. */
function tryConnect(port: number, localAddress?: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) }, () => s.end('hello'));
    let reply = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.on('data', (d) => (reply += d));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(reply);
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
}

async function eventually<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function attached(cgroup: string): Array<{ attach_type: string; name: string }> {
  return JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }).trim() || '[]');
}

const cg2 = notRoot ? '' : findCgroup2Mount();
const root = path.join(cg2, `nodemesh-test-${tag}`); // where the programs attach
const pod = path.join(root, 'pod'); // enrolled
const container = path.join(pod, 'app'); // a pod's nested cgroup must match the pod
const other = path.join(root, 'other'); // not enrolled
const bpffsDir = `/sys/fs/bpf/nodemesh-test-${tag}`;

let redirect: Redirect | undefined;
let proxy: Awaited<ReturnType<typeof listen>>;
let mesh: Awaited<ReturnType<typeof listen>>;
let nonMesh: Awaited<ReturnType<typeof listen>>;

before(async () => {
  if (notRoot) return;
  for (const dir of [root, pod, container, other]) fs.mkdirSync(dir);
  // Tolerates the restart test's moment without a Redirect (connections queued meanwhile).
  proxy = await listen('127.0.0.1', (s) => redirect?.lookupOrigin(s.remoteAddress as string, s.remotePort as number) ?? null);
  mesh = await listen('127.0.0.42');
  nonMesh = await listen('127.0.0.42');
  redirect = await Redirect.open({ bpffsDir, cgroupRoot: root, log });
  redirect.setProxy('127.0.0.1', proxy.port);
  redirect.setPods(new Map([[cgroupId(pod), { podIP: '10.244.0.9' }]]));
  redirect.setDests([{ ip: '127.0.0.42', port: mesh.port, kind: 'service' }]);
});

after(async () => {
  if (notRoot) return;
  for (const child of children) child.kill('SIGKILL');
  redirect?.close();
  Redirect.cleanup(bpffsDir);
  for (const s of [proxy, mesh, nonMesh]) s?.server.close();
  for (const dir of [container, pod, other, root]) {
    for (let i = 0; i < 50 && fs.existsSync(dir); i++) {
      try {
        fs.rmdirSync(dir);
      } catch {
        await new Promise((r) => setTimeout(r, 20)); // the exited child may not have left yet
      }
    }
  }
});

test('an enrolled pod connecting to a mesh address reaches the proxy, which finds the origin', { skip: notRoot }, async () => {
  const r = redirect as Redirect;
  assert.equal(await connectFrom(container, '127.0.0.42', mesh.port), 'ok');
  assert.equal(mesh.accepted.length, 0, 'the mesh destination itself must not see the connection');
  assert.equal(proxy.accepted.length, 1);
  const got = proxy.accepted[0] as Accepted;
  assert.equal(got.bytes, PAYLOAD);
  assert.deepEqual(
    { ...got.origin, cookie: undefined },
    { dstIP: '127.0.0.42', dstPort: mesh.port, cgroupId: cgroupId(pod), cookie: undefined },
  );

  const flow = await eventually('the closed flow', () =>
    r.flows().find((f) => f.port === got.remotePort && !f.open),
  );
  assert.equal(flow.ip, '127.0.0.1');
  assert.equal(flow.cookie, got.origin?.cookie);
  assert.equal(flow.bytesSent, PAYLOAD, 'payload only: the SYN and FIN are not bytes');
  assert.equal(flow.bytesReceived, 'ok'.length);
  assert.ok(flow.packetsSent > 0 && flow.packetsReceived > 0);
  assert.ok(flow.endMs !== undefined && flow.endMs >= flow.startMs);
  assert.ok(Math.abs(flow.startMs - Date.now()) < 10_000, 'start time is wall clock');
  assert.equal(r.lookupOrigin(got.remoteAddress, got.remotePort), null, 'a closed flow lends no identity');
});

test('a process outside any enrolled pod is not redirected', { skip: notRoot }, async () => {
  const before = proxy.accepted.length;
  assert.equal(await connectFrom(other, '127.0.0.42', mesh.port), 'ok');
  assert.equal(mesh.accepted.length, 1);
  assert.equal(proxy.accepted.length, before);
});

test('an enrolled pod connecting to a non-mesh address is not redirected', { skip: notRoot }, async () => {
  const before = proxy.accepted.length;
  assert.equal(await connectFrom(container, '127.0.0.42', nonMesh.port), 'ok');
  assert.equal(nonMesh.accepted.length, 1);
  assert.equal(proxy.accepted.length, before);
});

test('status reports every attachment and the maps', { skip: notRoot }, () => {
  const s = (redirect as Redirect).status();
  assert.equal(s.pinDir, bpffsDir);
  assert.deepEqual(s.programs.map((p) => [p.name, p.attachType, p.cgroup]), [
    ['connect4', 'cgroup/connect4', root],
    ['sockops', 'sockops', root],
    ['ingress', 'cgroup_skb/ingress', root],
  ]);
  assert.ok(s.programs.every((p) => p.id > 0));
  const maps = Object.fromEntries(s.maps.map((m) => [m.name, m]));
  assert.deepEqual(maps.nm_pods, { name: 'nm_pods', entries: 1, maxEntries: 16384 });
  assert.deepEqual(maps.nm_dests, { name: 'nm_dests', entries: 1, maxEntries: 65536 });
  assert.deepEqual(maps.nm_pod_mtls, { name: 'nm_pod_mtls', entries: 0, maxEntries: 16384 });
  assert.deepEqual(maps.nm_port_mtls, { name: 'nm_port_mtls', entries: 0, maxEntries: 65536 });
  assert.equal(s.plaintextRefused, 0);
  const kernel = attached(root).map((a) => a.attach_type).sort();
  assert.deepEqual(kernel, ['cgroup_inet4_connect', 'cgroup_inet_ingress', 'cgroup_sock_ops']);
});

test('setPods and setDests converge the maps to the desired content', { skip: notRoot }, () => {
  const r = redirect as Redirect;
  r.setDests([
    { ip: '127.0.0.42', port: mesh.port, kind: 'service' },
    { ip: '10.244.0.9', port: 8080, kind: 'pod' },
  ]);
  r.setPods(new Map([[cgroupId(pod), { podIP: '10.244.0.9' }], [cgroupId(other), { podIP: '10.244.0.10' }]]));
  const count = (name: string) => r.status().maps.find((m) => m.name === name)?.entries;
  assert.equal(count('nm_dests'), 2);
  assert.equal(count('nm_pods'), 2);
  r.setDests([{ ip: '127.0.0.42', port: mesh.port, kind: 'service' }]);
  r.setPods(new Map([[cgroupId(pod), { podIP: '10.244.0.9' }]]));
  assert.equal(count('nm_dests'), 1);
  assert.equal(count('nm_pods'), 1);
});

describe('PeerAuthentication STRICT in the kernel', { skip: notRoot }, () => {
  const PROXY = '127.0.0.2';
  const OTHER = '127.0.0.3';
  let port: number;
  const kernel = (strict: boolean): KernelMtlsMode => (strict ? 'strict' : 'permissive');
  const mode = (strict: boolean, ports: Array<[number, boolean]> = []) =>
    new Map([['127.0.0.1', { mode: kernel(strict), ports: new Map(ports.map(([p, s]) => [p, kernel(s)])) }]]);

  before(async () => {
    port = await serveFrom(container, '127.0.0.1');
    (redirect as Redirect).setProxy(PROXY, proxy.port);
  });
  after(() => {
    redirect?.setMtls(new Map());
    redirect?.setProxy('127.0.0.1', proxy.port);
  });

  test('a STRICT pod accepts the proxy address only; plaintext from elsewhere is refused and counted', async () => {
    const r = redirect as Redirect;
    r.setMtls(mode(true));
    const before = r.status();
    assert.equal(await tryConnect(port, OTHER), 'timeout', 'another address (a pod, another node)');
    assert.equal(await tryConnect(port), 'timeout', 'a host process with its default source address');
    assert.equal(await tryConnect(port, PROXY), 'ok', 'the node proxy');
    const after = r.status();
    assert.ok(after.plaintextRefused >= before.plaintextRefused + 2, `refused ${before.plaintextRefused} -> ${after.plaintextRefused}`);
    assert.equal(after.proxyAdmitted, before.proxyAdmitted + 1);
  });

  test('PERMISSIVE and no policy at all let everyone in', async () => {
    const r = redirect as Redirect;
    r.setMtls(mode(false));
    assert.equal(await tryConnect(port, OTHER), 'ok');
    assert.equal(await tryConnect(port, PROXY), 'ok');
    r.setMtls(new Map());
    assert.equal(await tryConnect(port, OTHER), 'ok');
  });

  test('PERMISSIVE_PROXIED (a pod with a policy) refuses plaintext at the pod like STRICT: without the proxy listener it never gets in', async () => {
    const r = redirect as Redirect;
    r.setMtls(new Map([['127.0.0.1', { mode: 'permissive-proxied', ports: new Map() }]]));
    assert.equal(await tryConnect(port, OTHER), 'timeout');
    assert.equal(await tryConnect(port, PROXY), 'ok');
  });

  test("a port's own mode beats the pod's, both ways", async () => {
    const r = redirect as Redirect;
    r.setMtls(mode(false, [[port, true]]));
    assert.equal(await tryConnect(port, OTHER), 'timeout');
    assert.equal(await tryConnect(port, PROXY), 'ok');
    r.setMtls(mode(true, [[port, false]]));
    assert.equal(await tryConnect(port, OTHER), 'ok');
    r.setMtls(mode(true, [[port + 1 > 65535 ? 1 : port + 1, false]]));
    assert.equal(await tryConnect(port, OTHER), 'timeout', 'an override of another port does not apply');
  });

  test("a pod-wide STRICT leaves the pod's own outgoing connections working", async () => {
    (redirect as Redirect).setMtls(mode(true));
    // The reply comes from a non-proxy address to 127.0.0.1:<ephemeral>, a port of the STRICT pod.
    assert.equal(await connectFrom(container, '127.0.0.42', nonMesh.port), 'ok');
  });

  test('setMtls converges both maps and rejects a bad port before writing anything', () => {
    const r = redirect as Redirect;
    const count = (name: string) => r.status().maps.find((m) => m.name === name)?.entries;
    r.setMtls(
      new Map([
        ['127.0.0.1', { mode: 'strict', ports: new Map<number, KernelMtlsMode>([[8080, 'permissive'], [9090, 'strict']]) }],
        ['10.244.0.9', { mode: 'permissive', ports: new Map<number, KernelMtlsMode>([[8080, 'permissive-proxied']]) }],
      ]),
    );
    assert.equal(count('nm_pod_mtls'), 2);
    assert.equal(count('nm_port_mtls'), 3);
    r.setMtls(mode(true, [[8080, false]]));
    assert.equal(count('nm_pod_mtls'), 1);
    assert.equal(count('nm_port_mtls'), 1);
    assert.throws(() => r.setMtls(new Map([['10.244.0.10', { mode: 'strict', ports: new Map([[0, 'strict']]) }]])), /1\.\.65535, got 0/);
    assert.equal(count('nm_pod_mtls'), 1, 'nothing written');
    r.setMtls(new Map());
    assert.equal(count('nm_pod_mtls'), 0);
    assert.equal(count('nm_port_mtls'), 0);
  });
});

/** The kernel's cgroup links on `cgroup`: attach type -> link id and program id. */
function cgroupLinks(cgroup: string): Record<string, { id: number; prog: number }> {
  const id = Number(cgroupId(cgroup));
  const all: Array<{ id: number; prog_id: number; type: string; cgroup_id?: number; attach_type?: string }> = JSON.parse(
    execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' }),
  );
  return Object.fromEntries(all.filter((l) => l.type === 'cgroup' && l.cgroup_id === id).map((l) => [l.attach_type, { id: l.id, prog: l.prog_id }]));
}

test('a restart keeps every connection captured: links are updated in place and the maps keep their content', { skip: notRoot }, async () => {
  // Nobody listens on 127.0.0.42:<dead>: a connection the capture misses is refused.
  const dead = await listen('127.0.0.42');
  const deadPort = dead.port;
  await new Promise((r) => dead.server.close(r));
  (redirect as Redirect).setDests([
    { ip: '127.0.0.42', port: mesh.port, kind: 'service' },
    { ip: '127.0.0.42', port: deadPort, kind: 'service' },
  ]);
  const linksBefore = cgroupLinks(root);
  assert.equal(Object.keys(linksBefore).length, 3);

  // Connects in a tight loop until stdin closes, at most 20 s or 200000 connections.
  const script = `
    const net = require('net');
    const r = { ok: 0, failed: 0, errors: {}, first: 0, last: 0 };
    let stop = false;
    process.stdin.on('end', () => (stop = true)).resume();
    const deadline = Date.now() + 20000;
    const once = () => new Promise((resolve) => {
      const s = net.connect(+process.env.PORT, '127.0.0.42', () => { r.ok++; s.destroy(); resolve(); });
      s.on('error', (e) => { r.failed++; r.errors[e.code] = (r.errors[e.code] || 0) + 1; resolve(); });
    });
    (async () => {
      r.first = Date.now();
      while (!stop && Date.now() < deadline && r.ok + r.failed < 200000) {
        await once();
        if (r.ok + r.failed === 1) console.log('ready');
      }
      r.last = Date.now();
      console.log(JSON.stringify(r));
      process.exit(0);
    })();`;
  const child = spawn('sh', ['-c', 'echo $$ > "$CG/cgroup.procs" && exec "$NODE" -e "$SCRIPT"'], {
    env: { CG: container, NODE: process.execPath, SCRIPT: script, PORT: String(deadPort) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    await eventually('the client loop', () => (out.includes('ready') ? true : undefined));
    await new Promise((r) => setTimeout(r, 100));
    const restartStart = Date.now();
    const old = redirect as Redirect;
    redirect = undefined;
    old.close();
    redirect = await Redirect.open({ bpffsDir, cgroupRoot: root, log });
    const restartEnd = Date.now();
    await new Promise((r) => setTimeout(r, 100));
    child.stdin.end();
    await exited;
    const r = JSON.parse(out.trim().split('\n').pop() as string);
    assert.equal(r.failed, 0, `connections that went around the proxy: ${JSON.stringify(r.errors)} of ${r.ok + r.failed}`);
    assert.ok(r.ok > 10, `only ${r.ok} connections`);
    assert.ok(r.first < restartStart && r.last > restartEnd, 'the loop covered the whole restart');
  } finally {
    clearTimeout(killer);
    child.kill('SIGKILL');
  }

  const linksAfter = cgroupLinks(root);
  assert.deepEqual(Object.keys(linksAfter).sort(), Object.keys(linksBefore).sort());
  for (const [type, l] of Object.entries(linksBefore)) {
    assert.equal(linksAfter[type]?.id, l.id, `${type}: the same link`);
    assert.notEqual(linksAfter[type]?.prog, l.prog, `${type}: runs the newly loaded program`);
  }
  assert.equal(attached(root).length, 3, 'nothing stacked');
  const s = (redirect as Redirect).status();
  assert.deepEqual(s.programs.map((p) => p.id).sort(), Object.values(linksAfter).map((l) => l.prog).sort());
  const maps = Object.fromEntries(s.maps.map((m) => [m.name, m.entries]));
  assert.equal(maps.nm_pods, 1, 'nm_pods survived');
  assert.equal(maps.nm_dests, 2, 'nm_dests survived');
  // nm_config survived too: without a setProxy since the restart, a mesh connection still reaches the proxy.
  assert.equal(await connectFrom(container, '127.0.0.42', mesh.port), 'ok');
  assert.equal(proxy.accepted.at(-1)?.origin?.dstPort, mesh.port, 'the proxy accepted it (and found its origin)');
  assert.equal(mesh.accepted.length, 1, 'still only the unenrolled client of the earlier test');
  (redirect as Redirect).setDests([{ ip: '127.0.0.42', port: mesh.port, kind: 'service' }]);
});

test('pins that no longer match the maps are recreated, with a warning', { skip: notRoot }, async () => {
  (redirect as Redirect).close();
  redirect = undefined;
  // A previous ABI: nm_pods with another max_entries.
  const pin = path.join(bpffsDir, 'maps', 'nm_pods');
  fs.rmSync(pin);
  execFileSync('bpftool', ['map', 'create', pin, 'type', 'hash', 'key', '8', 'value', '8', 'entries', '16', 'name', 'nm_pods']);
  const warnings: string[] = [];
  const warnLog = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const linksBefore = cgroupLinks(root);
  redirect = await Redirect.open({ bpffsDir, cgroupRoot: root, log: warnLog });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] as string, /map nm_pods changed: pinned/);
  const maps = Object.fromEntries(redirect.status().maps.map((m) => [m.name, m]));
  assert.deepEqual(maps.nm_pods, { name: 'nm_pods', entries: 0, maxEntries: 16384 });
  assert.equal(attached(root).length, 3, 'nothing stacked');
  const linksAfter = cgroupLinks(root);
  assert.notEqual(linksAfter.cgroup_inet4_connect?.id, linksBefore.cgroup_inet4_connect?.id, 'new links');
  redirect.setProxy('127.0.0.1', proxy.port);
  redirect.setPods(new Map([[cgroupId(pod), { podIP: '10.244.0.9' }]]));
  redirect.setDests([{ ip: '127.0.0.42', port: mesh.port, kind: 'service' }]);
});

test('a restart replaces the attachments instead of stacking them; cleanup removes everything', { skip: notRoot }, async () => {
  (redirect as Redirect).close();
  redirect = undefined;
  assert.equal(attached(root).length, 3, 'close() leaves the pods captured and STRICT enforced');
  redirect = await Redirect.open({ bpffsDir, cgroupRoot: root, log });
  assert.equal(attached(root).length, 3);
  redirect.close();
  redirect = undefined;
  Redirect.cleanup(bpffsDir);
  Redirect.cleanup(bpffsDir);
  assert.deepEqual(attached(root), []);
  assert.equal(fs.existsSync(bpffsDir), false);
});
