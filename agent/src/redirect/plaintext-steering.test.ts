// Runs the real PERMISSIVE steering as root: a "pod" network namespace whose loopback holds
// the pod IP, the node proxy's address and another client's address, an app in the pod's
// cgroup and netns, the capture attached to a temporary cgroup, and the sk_lookup program
// handing plaintext to a listener this test process owns inside the pod's netns.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { PlaintextSteering, Redirect, findCgroup2Mount, type KernelMtlsMode } from './index.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root (BPF programs, netns, cgroups, bpffs): run the tests as root' : false;

const log = pino({ level: 'silent' });
const tag = crypto.randomBytes(4).toString('hex');
const POD_IP = '10.250.0.2';
const PROXY_IP = '10.250.0.1';
const OTHER_IP = '10.250.0.3';
const netns = `nm-steer-${tag}`;
const netnsPath = `/var/run/netns/${netns}`;
const cg2 = notRoot ? '' : findCgroup2Mount();
const root = path.join(cg2, `nodemesh-steer-${tag}`);
const podCgroup = path.join(root, 'pod');
const appCgroup = path.join(podCgroup, 'app');
const strayCgroup = path.join(root, 'stray');
const bpffsDir = `/sys/fs/bpf/nodemesh-steer-${tag}`;

const children = new Set<ReturnType<typeof spawn>>();

/** A process that joins `cgroup`, then (unless `netnsFile` is null) the netns, then runs node. */
function spawnIn(cgroup: string, netnsFile: string | null, script: string, env: Record<string, string> = {}) {
  const enter = netnsFile ? `exec nsenter --net="${netnsFile}" -- "$NODE" -e "$SCRIPT"` : 'exec "$NODE" -e "$SCRIPT"';
  const child = spawn('sh', ['-c', `echo $$ > "$CG/cgroup.procs" && ${enter}`], {
    env: { ...process.env, CG: cgroup, NODE: process.execPath, SCRIPT: script, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** The pod's app on `host`: answers "app" to each connection; resolves with its port. */
function startApp(host: string): Promise<number> {
  const child = spawnIn(appCgroup, netnsPath, `
    const srv = require('net').createServer((s) => { s.on('error', () => {}); s.end('app'); });
    srv.listen(0, '${host}', () => console.log(srv.address().port));`);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.on('exit', (code) => reject(new Error(`app exited ${code}`)));
  });
}

/**
 * Connects inside the pod netns from `from` to the pod; the reply ("app", "proxy"), "timeout"
 * or an error code. Asynchronous: the proxy listener is served by this very process.
 */
function connect(from: string, port: number): Promise<string> {
  const script = `
    const s = require('net').connect({ host: '${POD_IP}', port: ${port}, localAddress: '${from}' });
    let reply = '';
    const timer = setTimeout(() => { console.log('timeout'); process.exit(0); }, 1000);
    s.on('data', (d) => (reply += d));
    s.on('close', () => { clearTimeout(timer); console.log(reply); process.exit(0); });
    s.on('error', (e) => { clearTimeout(timer); console.log(e.code); process.exit(0); });`;
  return new Promise((resolve, reject) =>
    execFile('nsenter', [`--net=${netnsPath}`, '--', process.execPath, '-e', script], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout.trim()),
    ),
  );
}

function skLookupLinks(): number {
  const ino = fs.statSync(netnsPath).ino;
  const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ type: string; netns_ino?: number }>;
  return links.filter((l) => l.type === 'netns' && l.netns_ino === ino).length;
}

const ownNetns = fs.readlinkSync('/proc/thread-self/ns/net');
const listenersInPodNetns = () => execFileSync('nsenter', [`--net=${netnsPath}`, 'ss', '-ltnH'], { encoding: 'utf8' });

describe('PERMISSIVE plaintext steered to the proxy listener in the pod netns (sk_lookup)', { skip: notRoot }, () => {
  let redirect: Redirect;
  let steering: PlaintextSteering;
  let appPort: number;
  /** The same app listening dual-stack, as Node does by default. */
  let dualStackPort: number;
  const accepted: Array<{ local: string; remote: string }> = [];
  const servers: net.Server[] = [];
  const pod = { name: 'shop/web', podIP: POD_IP, cgroupPath: podCgroup };
  const modes = (mode: KernelMtlsMode) => new Map([[POD_IP, { mode, ports: new Map() }]]);

  /** What the agent does with the fd: a server that answers "proxy" and records the addresses. */
  const serve = (fd: number) => {
    const server = net.createServer((s) => {
      accepted.push({ local: `${s.localAddress}:${s.localPort}`, remote: s.remoteAddress as string });
      s.on('error', () => {});
      s.end('proxy');
    });
    server.listen({ fd });
    servers.push(server);
    return server;
  };

  before(async () => {
    for (const dir of [root, podCgroup, appCgroup, strayCgroup]) fs.mkdirSync(dir);
    execFileSync('ip', ['netns', 'add', netns]);
    execFileSync('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    for (const ip of [PROXY_IP, POD_IP, OTHER_IP]) execFileSync('ip', ['-n', netns, 'addr', 'add', `${ip}/32`, 'dev', 'lo']);
    appPort = await startApp('0.0.0.0');
    dualStackPort = await startApp('::');
    redirect = await Redirect.open({ bpffsDir, cgroupRoot: root, log });
    redirect.setProxy(PROXY_IP, 15001);
    steering = PlaintextSteering.open({ bpffsDir, listen: { host: '127.0.0.1', port: 15006 }, log });
  });

  after(async () => {
    for (const s of servers) s.close();
    steering?.close();
    redirect?.close();
    Redirect.cleanup(bpffsDir);
    for (const child of children) child.kill('SIGKILL');
    spawnSync('ip', ['netns', 'delete', netns]);
    for (const dir of [appCgroup, strayCgroup, podCgroup, root]) {
      for (let i = 0; i < 50 && fs.existsSync(dir); i++) {
        try {
          fs.rmdirSync(dir);
        } catch {
          await new Promise((r) => setTimeout(r, 20)); // a killed child may not have left yet
        }
      }
    }
  });

  /** Attaches the pod, serves its listener, runs `body`; detaches and closes also when it fails. */
  const withListener = async (body: (server: net.Server) => Promise<void>) => {
    const fd = steering.attach(pod);
    assert.equal(typeof fd, 'number', 'the pod netns was found');
    const server = serve(fd as number);
    try {
      await body(server);
    } finally {
      steering.detach(POD_IP);
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  };

  test('PERMISSIVE: another client lands on the proxy listener with its original addresses; the proxy and the pod itself go straight in', async () => {
    redirect.setMtls(modes('permissive'));
    await withListener(async () => {
      assert.match(listenersInPodNetns(), /127\.0\.0\.1:15006/);
      assert.equal(skLookupLinks(), 1);
      assert.deepEqual({ ...steering.status(), programId: 0 }, { programId: 0, listeners: 1, netnsLinks: 1 });
      assert.ok(steering.status().programId > 0);

      assert.equal(await connect(OTHER_IP, appPort), 'proxy');
      assert.deepEqual(accepted.at(-1), { local: `${POD_IP}:${appPort}`, remote: OTHER_IP });
      assert.equal(await connect(PROXY_IP, appPort), 'app', 'the node proxy dials the pod itself');
      assert.equal(await connect(POD_IP, appPort), 'app', 'the pod calling itself');

      assert.equal(await connect(OTHER_IP, dualStackPort), 'proxy');

      redirect.setMtls(modes('strict'));
      assert.equal(await connect(OTHER_IP, appPort), 'timeout', 'STRICT: neither steered nor let in');
      assert.equal(await connect(OTHER_IP, dualStackPort), 'timeout', 'STRICT holds for a dual-stack listener too');
      assert.equal(await connect(PROXY_IP, appPort), 'app');
      assert.equal(await connect(PROXY_IP, dualStackPort), 'app');
    });
    assert.equal(skLookupLinks(), 0);
    assert.doesNotMatch(listenersInPodNetns(), /:15006/);
  });

  test('permissive-proxied: steered while the listener lives; refused at the pod once it is gone (the agent stopped)', async () => {
    redirect.setMtls(modes('permissive-proxied'));
    await withListener(async () => {
      assert.equal(await connect(OTHER_IP, appPort), 'proxy');
    });
    assert.deepEqual({ ...steering.status(), programId: 0 }, { programId: 0, listeners: 0, netnsLinks: 0 });
    assert.equal(await connect(OTHER_IP, appPort), 'timeout', 'plaintext must not reach a policed pod past the proxy');
    assert.equal(await connect(OTHER_IP, dualStackPort), 'timeout', 'plaintext must not reach a policed pod past the proxy');
    assert.equal(await connect(PROXY_IP, appPort), 'app');

    // PERMISSIVE without a listener: plaintext is allowed, so it reaches the pod directly.
    redirect.setMtls(modes('permissive'));
    assert.equal(await connect(OTHER_IP, appPort), 'app');
  });

  test('closing the listener alone stops the steering: the kernel drops it from the sockhash', async () => {
    redirect.setMtls(modes('permissive'));
    await withListener(async (server) => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      assert.equal(steering.status().listeners, 0);
      assert.equal(steering.status().netnsLinks, 1);
      assert.equal(await connect(OTHER_IP, appPort), 'app');
    });
    assert.equal(skLookupLinks(), 0);
  });

  test("never attaches to the agent's own netns, nor to a netns without the pod IP", async () => {
    // A process in the pod's cgroup that has not entered the pod's netns yet.
    const stray = spawnIn(strayCgroup, null, 'setInterval(() => {}, 1000)');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(steering.attach({ name: 'shop/stray', podIP: POD_IP, cgroupPath: strayCgroup }), null);
    stray.kill('SIGKILL');
    assert.throws(() => steering.attach({ ...pod, podIP: '10.250.0.99' }), (err: NodeJS.ErrnoException) => err.code === 'NM_ERR_NETNS_NOT_FOUND');
    assert.equal(skLookupLinks(), 0);
    assert.equal(fs.readlinkSync('/proc/thread-self/ns/net'), ownNetns, 'back in our own netns after each attempt');
  });
});
