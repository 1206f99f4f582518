// Kubernetes mode end to end: an API server double speaking the real list/watch protocol, the
// real `nodemesh controller` watching it with client-node, and real agents on the netns
// testbed following the controller's gRPC config stream. Pods carry no annotation: each agent
// finds their cgroups from their UIDs (cgroupfs driver on n1, systemd on n2).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AgentStatus } from '../agent/src/app.js';
import { WATCHED_KINDS } from '../agent/src/controller/kube-kinds.js';
import { ConfigStreamClient } from '../agent/src/control/stream-client.js';
import { createCsr } from '../agent/src/identity/x509.js';
import { KubeApiServer } from '../agent/src/testing/kube-api-server.js';
import { memoryLogger } from '../agent/src/testing/mesh.js';
import { CONTROLLER_DNS_NAME } from '../agent/src/cli/defaults.js';
import { AgentProcess, CLI } from '../scripts/testbed/agent.js';
import { serviceDoc, type Doc } from '../scripts/testbed/mesh-config.js';
import { Testbed } from '../scripts/testbed/testbed.js';
import { generateKeyPairSync } from 'node:crypto';
import { freePort } from '../agent/src/testing/ports.js';

const isRoot = process.getuid?.() === 0;
const AGENT_SA = 'system:serviceaccount:nodemesh-system:nodemesh-agent';
const APPLIED = 'configuration applied to the capture maps, mTLS modes and identities';
/** The bound: a change in the API reaches the agent's BPF maps within a second. */
const PROPAGATION_MS = 1000;

const policy = (name: string, spec: Doc): Doc => ({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop' }, spec });

describe('Kubernetes mode: controller, config stream and agents', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  let api: KubeApiServer;
  let controller: ChildProcess | undefined;
  let controllerLog = '';
  let socket: string;
  let kubeconfig: string;
  let rootFile: string;
  const agents = new Map<string, AgentProcess>();
  const agent = (node: string) => agents.get(node) as AgentProcess;
  const status = (node: string) => agent(node).json<AgentStatus>(['status']);
  const tokenFile = (node: string) => path.join(tb.scratchDir, `token-${node}`);
  const stateDir = (node: string) => path.join(tb.scratchDir, `state-${node}`);

  const curl = async (url: string) => {
    const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '2', url]);
    return r.code === 0 ? (JSON.parse(r.stdout) as { pod: string }).pod : `curl ${r.code}: ${r.stderr.trim()}`;
  };
  const pods = async (n: number) => {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) seen.add(await curl('http://10.96.0.10/'));
    return [...seen].sort();
  };
  /** Waits until requests to the Service reach exactly `expected`; the error shows what they reached last. */
  const servedBy = async (what: string, expected: string[], n: number, timeoutMs: number) => {
    let last: string[] = [];
    try {
      await agent('n1').until(what, async () => ((last = await pods(n)).join() === expected.join() ? true : undefined), timeoutMs);
    } catch (err) {
      const versions = agent('n1')
        .output.split('\n')
        .filter((l) => l.includes(APPLIED))
        .slice(-3)
        .map((l) => (JSON.parse(l) as { version: number }).version);
      const lines = agent('n1').output.split('\n');
      const n1 = [
        ...lines.filter((l) => /config|snapshot|controller/.test(l)).slice(-6),
        ...lines.filter((l) => /"msg":"(request|connection closed)"/.test(l)).slice(-3),
        JSON.stringify(((await agent('n1').json<Array<{ name: string; ports: unknown }>>(['services']).catch((e: Error) => [{ name: String(e), ports: [] }])) ?? []).find((x) => x.name === 'web')),
      ];
      throw new Error(
        `${(err as Error).message}; last served by ${JSON.stringify(last)}; n1 applied versions ${versions.join(', ')}; open watches ${api.openWatches}; controller:\n${controllerLog.split('\n').slice(-16).join('\n')}\nn1:\n${n1.join('\n')}`,
        { cause: err },
      );
    }
  };

  /**
   * Makes a change in the API and returns how long until `node`'s agent had applied a
   * configuration satisfying `check` to its maps (from the agent's own log timestamps).
   */
  const propagation = async (node: string, change: () => void, check: (s: AgentStatus) => boolean): Promise<number> => {
    const from = agent(node).output.length;
    const t0 = Date.now();
    change();
    await agent(node).until(`the change on ${node}`, async () => (check(await status(node)) ? true : undefined), 10_000);
    const applied = agent(node)
      .output.slice(from)
      .split('\n')
      .filter((l) => l.includes(APPLIED))
      .map((l) => (JSON.parse(l) as { time: number }).time);
    assert.ok(applied.length > 0, 'the agent logged no applied configuration');
    return Math.max(...applied) - t0;
  };
  const mapEntries = (s: AgentStatus, name: string) => s.bpf.maps.find((m) => m.name === name)?.entries;

  const startController = async () => {
    controllerLog = '';
    const health = await freePort();
    controller = spawn(process.execPath, [CLI, 'controller', '--kubeconfig', kubeconfig, '--listen', `unix:${socket}`, '--health', `127.0.0.1:${health}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const child = controller;
    child.stdout?.on('data', (c: Buffer) => (controllerLog += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (controllerLog += c.toString()));
    const deadline = Date.now() + 20_000;
    while (!controllerLog.includes('controller ready')) {
      if (child.exitCode !== null) throw new Error(`controller exited ${child.exitCode}:\n${controllerLog}`);
      if (Date.now() > deadline) throw new Error(`controller not ready within 20 s:\n${controllerLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const killController = async () => {
    if (!controller || controller.exitCode !== null) return;
    const exited = once(controller, 'exit');
    controller.kill('SIGKILL');
    await exited;
  };
  const startAgent = (node: string, ready = true) =>
    agent(node).startWithController({ controller: `unix:${socket}`, controllerCa: rootFile, tokenFile: tokenFile(node), stateDir: stateDir(node), ready });

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          cgroupDriver: 'cgroupfs',
          pods: [
            { name: 'client', namespace: 'shop', labels: { app: 'client' }, serviceAccount: 'client' },
            { name: 'web-1', namespace: 'shop', labels: { app: 'web' }, serviceAccount: 'web' },
          ],
        },
        {
          name: 'n2',
          cgroupDriver: 'systemd',
          pods: [
            { name: 'web-2', namespace: 'shop', labels: { app: 'web' }, serviceAccount: 'web' },
            { name: 'late', namespace: 'shop', labels: { app: 'late' }, serviceAccount: 'late' },
          ],
        },
      ],
      namespaces: { shop: { 'nodemesh.io/mode': 'enabled' } },
    });
    await Promise.all(['web-1', 'web-2', 'late'].map((p) => tb.startServer(p)));
    api = await KubeApiServer.start();
    for (const obj of tb.kubeObjects({ cgroupAnnotations: false })) {
      const o = obj as { kind: string; metadata: { name: string } };
      // The pod "late" is created by a test.
      if (!(o.kind === 'Pod' && o.metadata.name === 'late')) api.create(obj as never);
    }
    api.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'nodemesh-system' } });
    api.create(serviceDoc({ name: 'web', namespace: 'shop', clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] }) as never);
    // Requests spread evenly, so that a few show every endpoint (the default, peak EWMA, favours the nearest).
    for (const host of ['web', 'web-b']) {
      api.create({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: host, namespace: 'shop' }, spec: { host, trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } } });
    }
    for (const node of ['n1', 'n2']) {
      api.addToken(`token-${node}`, { username: AGENT_SA, extra: { 'authentication.kubernetes.io/node-name': [node] }, audiences: ['nodemesh'] });
      writeFileSync(tokenFile(node), `token-${node}\n`, { mode: 0o600 });
    }
    kubeconfig = path.join(tb.scratchDir, 'kubeconfig');
    writeFileSync(kubeconfig, api.kubeConfig().exportConfig());
    socket = path.join(tb.scratchDir, 'controller.sock');
    await startController();
    // The controller published the root in a ConfigMap; the DaemonSet mounts it as a file.
    rootFile = path.join(tb.scratchDir, 'root-cert.pem');
    const cm = api.get({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'nodemesh-ca-root', namespace: 'nodemesh-system' } }) as { data: Record<string, string> };
    writeFileSync(rootFile, cm.data['root-cert.pem'] as string);
    for (const node of ['n1', 'n2']) {
      agents.set(node, new AgentProcess(tb, node));
      await startAgent(node);
    }
  });

  after(async () => {
    try {
      for (const a of agents.values()) await a.remove();
      await killController();
      await api?.close();
    } finally {
      await tb?.destroy();
    }
  });

  it('captures the pods of an enrolled namespace found from their UIDs under both cgroup drivers, with no change to the pods', async () => {
    const [s1, s2] = [await status('n1'), await status('n2')];
    assert.equal(s1.enrolledPods, 2, 'client and web-1 on n1 (cgroupfs layout)');
    assert.equal(s2.enrolledPods, 1, 'web-2 on n2 (systemd layout)');
    assert.match(s1.config.source, /controller/);
    assert.deepEqual(await pods(12), ['web-1', 'web-2'], 'the Service balances over both nodes, cross-node over HBONE');
  });

  it('a pod created, relabelled and deleted in the API reaches the agent and its BPF maps within a second', async (t) => {
    const late = tb.kubeObjects({ cgroupAnnotations: false }).find((o) => (o as { metadata: { name: string } }).metadata.name === 'late') as Doc;
    const before = mapEntries(await status('n2'), 'nm_pods') as number;
    const created = await propagation('n2', () => api.create(late as never), (s) => s.enrolledPods === 2 && mapEntries(s, 'nm_pods') === before + 1);
    t.diagnostic(`pod created → enrolled on n2 in ${created} ms`);
    assert.ok(created < PROPAGATION_MS, `created: ${created} ms`);

    const relabelled = await propagation(
      'n1',
      () => api.update({ ...late, metadata: { ...(late.metadata as object), labels: { app: 'web' } } } as never),
      (s) => s.config.version > 0,
    );
    t.diagnostic(`pod relabelled into the Service → applied on n1 in ${relabelled} ms`);
    assert.ok(relabelled < PROPAGATION_MS, `relabelled: ${relabelled} ms`);
    assert.deepEqual(await pods(20), ['late', 'web-1', 'web-2']);

    const deleted = await propagation('n2', () => api.remove(late as never), (s) => s.enrolledPods === 1 && mapEntries(s, 'nm_pods') === before);
    t.diagnostic(`pod deleted → un-enrolled on n2 in ${deleted} ms`);
    assert.ok(deleted < PROPAGATION_MS, `deleted: ${deleted} ms`);
    assert.deepEqual(await pods(12), ['web-1', 'web-2']);
  });

  it('a namespace un-enrolled and enrolled again: capture stops and resumes within a second', async (t) => {
    const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: {} as Record<string, string> } };
    const off = await propagation('n1', () => api.update(ns as never), (s) => s.enrolledPods === 0);
    t.diagnostic(`label removed → un-enrolled in ${off} ms`);
    assert.ok(off < PROPAGATION_MS, `un-enrolled: ${off} ms`);
    assert.match(await curl('http://10.96.0.10/'), /^curl/, 'a VIP nothing captures is unreachable');
    ns.metadata.labels = { 'nodemesh.io/mode': 'enabled' };
    const on = await propagation('n1', () => api.update(ns as never), (s) => s.enrolledPods === 2);
    t.diagnostic(`label restored → enrolled in ${on} ms`);
    assert.ok(on < PROPAGATION_MS, `enrolled: ${on} ms`);
    assert.deepEqual(await pods(12), ['web-1', 'web-2']);
  });

  it('a policy created and deleted in the API is enforced and lifted within a second', async (t) => {
    const deny = policy('deny-client', { action: 'DENY', selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/client'] } }] }] });
    const version = (await status('n2')).config.version;
    const enforced = await propagation('n2', () => api.create(deny as never), (s) => s.config.version > version);
    t.diagnostic(`DENY created → applied on n2 in ${enforced} ms`);
    assert.ok(enforced < PROPAGATION_MS, `enforced: ${enforced} ms`);
    // The source proxy answers a denied HTTP connection with 403.
    const denied = await tb.exec({ pod: 'client' }, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', 'http://10.96.0.10/']);
    assert.equal(denied.stdout, '403');
    const lifted = await propagation('n2', () => api.remove(deny as never), (s) => s.config.version > version + 1);
    assert.ok(lifted < PROPAGATION_MS, `lifted: ${lifted} ms`);
    assert.deepEqual(await pods(12), ['web-1', 'web-2']);
  });

  it('NACK: an invalid policy is refused by name, in the agent status and the controller log, and the rest applies', async () => {
    const bad = policy('bad-action', { action: 'FOO' });
    const other = serviceDoc({ name: 'web-b', namespace: 'shop', clusterIP: '10.96.0.20', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] });
    api.create(bad as never);
    api.create(other as never);
    const s = await agent('n1').until('the NACK', async () => {
      const now = await status('n1');
      return now.services === 2 && now.config.rejections.length > 0 ? now : undefined;
    });
    assert.ok(s.config.rejections.some((r) => r.resource === 'AuthorizationPolicy shop/bad-action' && r.field === 'spec.action'), JSON.stringify(s.config.rejections));
    assert.match((await curl('http://10.96.0.20/')), /^web-[12]$/, 'the valid Service of the same snapshot applies');
    await agent('n1').until('the NACK in the controller log', async () => (/NACK[^\n]*AuthorizationPolicy shop\/bad-action/.test(controllerLog) ? true : undefined));
    api.remove(bad as never);
    api.remove(other as never);
    await agent('n1').until('the NACK to clear', async () => ((await status('n1')).config.rejections.length === 0 ? true : undefined));
  });

  it('a Service without a selector is served from its EndpointSlice in the API, and follows it, through incremental updates', async () => {
    const db = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db', namespace: 'shop' }, spec: { clusterIP: '10.96.0.30', ports: [{ port: 80, protocol: 'TCP' }] } };
    const slice = (pod: string) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'db-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'db' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [tb.podIP(pod)], conditions: { ready: true } }],
      ports: [{ port: 8080, protocol: 'TCP' }],
    });
    const servedBy = (pod: string) => agent('n1').until(`db served by ${pod}`, async () => ((await curl('http://10.96.0.30/')) === pod ? true : undefined), 10_000);
    api.create(db as never);
    api.create(slice('web-2') as never);
    await servedBy('web-2');
    api.update(slice('web-1') as never);
    await servedBy('web-1');
    assert.match(controllerLog, /sent to the agent of node n1: the changes since/, 'the agents got the changes, not their whole view');
    api.remove(slice('web-1') as never);
    api.remove(db as never);
  });

  it('survives dropped watches and a 410 Gone: the controller relists and the change still arrives', async () => {
    const lists = api.listRequests('/api/v1/pods');
    const web2 = tb.kubeObjects({ cgroupAnnotations: false }).find((o) => (o as { metadata: { name: string } }).metadata.name === 'web-2') as Doc;
    // A change made while no watch is open, with the history compacted away: only a relist finds it.
    api.dropWatches();
    api.update({ ...web2, metadata: { ...(web2.metadata as object), labels: { app: 'parked' } } } as never);
    api.compact();
    await servedBy('web-2 out of the Service', ['web-1'], 8, 15_000);
    assert.ok(api.listRequests('/api/v1/pods') > lists, 'the pod informer relisted');
    // Every informer is watching again before the next change.
    await agent('n1').until('the watches to reopen', async () => (api.openWatches === WATCHED_KINDS.length ? true : undefined), 10_000);
    api.update(web2 as never);
    await servedBy('web-2 back', ['web-1', 'web-2'], 12, 10_000);
  });

  it("an agent cannot get another node's view, nor a certificate for an identity with no pod on its node", async () => {
    const client = (token: string, node: string) => {
      const { log, lines } = memoryLogger();
      const c = new ConfigStreamClient({ address: `unix:${socket}`, serverName: CONTROLLER_DNS_NAME, rootPem: readRoot(), token: () => token, node, onSnapshot: () => [], log });
      return { c, lines };
    };
    // n1's token asking for n2's view.
    const snooper = client('token-n1', 'n2');
    snooper.c.start();
    const refused = await agent('n1').until('the refusal', async () => snooper.lines.find((l) => /failed/.test(String(l.msg)))?.msg as string | undefined);
    snooper.c.stop();
    assert.match(refused, /PERMISSION_DENIED/);
    assert.match(refused, /n1/);
    assert.equal(snooper.lines.some((l) => /stream to the controller open/.test(String(l.msg))), false);
    const { c: signer } = client('token-n1', 'n1');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const csrPem = createCsr({ uris: ['spiffe://cluster.local/ns/shop/sa/late'], privateKey });
    await assert.rejects(signer.sign(csrPem, 3600), /no pod on node n1 runs as service account shop\/late/);
    const ok = await signer.sign(createCsr({ uris: ['spiffe://cluster.local/ns/shop/sa/web'], privateKey }), 3600);
    assert.match(ok.certChainPem, /BEGIN CERTIFICATE/);
    signer.stop();
  });

  it('controller down: traffic and policy go on; a restarted agent serves from its snapshot; the controller back, agents resync', async () => {
    await killController();
    assert.deepEqual(await pods(12), ['web-1', 'web-2'], 'traffic goes on without the controller');
    await agent('n1').stop();
    await startAgent('n1', false);
    await agent('n1').waitFor('agent ready', 20_000);
    assert.match(agent('n1').output, /serving from the on-disk snapshot/);
    assert.match(agent('n1').output, /using the stored certificate of spiffe:\/\/cluster.local\/ns\/shop\/sa\/client/);
    assert.deepEqual(await pods(12), ['web-1', 'web-2'], 'the restarted agent captures and tunnels from its snapshot and stored certificates');

    // A change made while the controller is down reaches the agents once it is back.
    const web1 = tb.kubeObjects({ cgroupAnnotations: false }).find((o) => (o as { metadata: { name: string } }).metadata.name === 'web-1') as Doc;
    api.update({ ...web1, metadata: { ...(web1.metadata as object), labels: { app: 'parked' } } } as never);
    await startController();
    await servedBy('resync after the controller is back', ['web-2'], 8, 15_000);
    api.update(web1 as never);
    await servedBy('web-1 back', ['web-1', 'web-2'], 12, 10_000);
  });

  const readRoot = () => api.get({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'nodemesh-ca-root', namespace: 'nodemesh-system' } }).data['root-cert.pem'] as string;
});

