// Runs the real capture as root: programs attached to a temporary cgroup, processes moved
// into enrolled and unenrolled child cgroups, connections observed at real listeners.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
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
  proxy = await listen('127.0.0.1', (s) => (redirect as Redirect).lookupOrigin(s.remoteAddress as string, s.remotePort as number));
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

test('status reports both attachments and the maps', { skip: notRoot }, () => {
  const s = (redirect as Redirect).status();
  assert.equal(s.pinDir, bpffsDir);
  assert.deepEqual(s.programs.map((p) => [p.name, p.attachType, p.cgroup]), [
    ['connect4', 'cgroup/connect4', root],
    ['sockops', 'sockops', root],
  ]);
  assert.ok(s.programs.every((p) => p.id > 0));
  const maps = Object.fromEntries(s.maps.map((m) => [m.name, m]));
  assert.deepEqual(maps.nm_pods, { name: 'nm_pods', entries: 1, maxEntries: 16384 });
  assert.deepEqual(maps.nm_dests, { name: 'nm_dests', entries: 1, maxEntries: 65536 });
  const kernel = attached(root).map((a) => a.attach_type).sort();
  assert.deepEqual(kernel, ['cgroup_inet4_connect', 'cgroup_sock_ops']);
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

test('a restart replaces the attachments instead of stacking them; cleanup removes everything', { skip: notRoot }, async () => {
  (redirect as Redirect).close();
  redirect = undefined;
  assert.equal(attached(root).length, 2, 'close() leaves the pods captured');
  redirect = await Redirect.open({ bpffsDir, cgroupRoot: root, log });
  assert.equal(attached(root).length, 2);
  redirect.close();
  redirect = undefined;
  Redirect.cleanup(bpffsDir);
  Redirect.cleanup(bpffsDir);
  assert.deepEqual(attached(root), []);
  assert.equal(fs.existsSync(bpffsDir), false);
});
