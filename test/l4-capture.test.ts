// End to end on the netns testbed: unchanged pods, real eBPF redirect, real node proxy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import type { FlowRow } from '../agent/src/telemetry/flow-table.js';
import type { AgentStatus } from '../agent/src/app.js';
import { AgentProcess, FIXTURES } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;

interface ClientResult {
  sent: number;
  received: number;
  localPort: number;
  error: string | null;
}

describe('eBPF capture and the L4 node proxy', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed | undefined;
  let dir: string;
  let configFile: string;
  let baseDocs: Doc[];
  const agents: AgentProcess[] = [];
  const a = (node: string) => agents.find((x) => x.node === node) as AgentProcess;

  // appProtocol tcp: these tests are about capture and the L4 relay; HTTP routing has its own.
  const services: Doc[] = [
    serviceDoc({ name: 'web', namespace: 'shop', clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080, appProtocol: 'tcp' }] }),
    serviceDoc({ name: 'web-remote', namespace: 'shop', clusterIP: '10.96.0.11', selector: { app: 'web-remote' }, ports: [{ port: 80, targetPort: 8080, appProtocol: 'tcp' }] }),
    serviceDoc({ name: 'echo-remote', namespace: 'shop', clusterIP: '10.96.0.12', selector: { app: 'web-remote' }, ports: [{ port: 7000, targetPort: 'echo' }] }),
    serviceDoc({ name: 'nobody', namespace: 'shop', clusterIP: '10.96.0.14', selector: { app: 'nobody' }, ports: [{ port: 80, targetPort: 8080, appProtocol: 'tcp' }] }),
    // Round robin, so that a few sequential connections reach every endpoint: the default
    // (least request over connect latency) keeps them on the fastest while none is busy.
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'web', namespace: 'shop' }, spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } } },
  ];

  const curl = async (pod: string, url: string) => {
    const r = await (tb as Testbed).exec({ pod }, ['curl', '-sS', '--max-time', '5', url]);
    return { ...r, body: r.code === 0 ? (JSON.parse(r.stdout) as { pod: string; peer: string }) : undefined };
  };
  const tcpClient = async (pod: string, host: string, port: number, n: number): Promise<ClientResult> => {
    const r = await (tb as Testbed).exec({ pod }, [process.execPath, path.join(FIXTURES, 'tcp-client.mjs'), host, String(port), String(n)]);
    return JSON.parse(r.stdout) as ClientResult;
  };
  const flows = (node: string) => a(node).json<FlowRow[]>(['flows']);
  const status = (node: string) => a(node).json<AgentStatus>(['status']);
  const waitForVersion = (node: string, above: number) =>
    a(node).until(`config version > ${above} on ${node}`, async () => {
      const s = await status(node);
      return s.config.version > above ? s : undefined;
    });
  const podDoc = (docs: Doc[], name: string) => docs.find((d) => d.kind === 'Pod' && d.metadata.name === name) as Doc;

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: 'shop', labels: { app: 'client' } },
            { name: 'web-1', namespace: 'shop', labels: { app: 'web' } },
            { name: 'web-1b', namespace: 'shop', labels: { app: 'spare' } },
            { name: 'plain', namespace: 'legacy', labels: { app: 'plain' } },
          ],
        },
        { name: 'n2', pods: [{ name: 'web-2', namespace: 'shop', labels: { app: 'web-remote' } }] },
      ],
      namespaces: { shop: { 'nodemesh.io/mode': 'enabled' }, legacy: {} },
    });
    await Promise.all(['web-1', 'web-1b', 'web-2', 'plain'].map((p) => (tb as Testbed).startServer(p)));
    dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-l4-'));
    configFile = path.join(dir, 'mesh.yaml');
    baseDocs = [...testbedDocs(tb), ...services];
    writeConfig(configFile, baseDocs);
    for (const node of ['n1', 'n2']) {
      const agent = new AgentProcess(tb, node);
      agents.push(agent);
      await agent.start(configFile);
    }
  });

  after(async () => {
    try {
      for (const agent of agents) {
        await agent.remove();
      }
    } finally {
      await tb?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serves a Service VIP from a pod on the same node, through the node proxy', async () => {
    const tbd = tb as Testbed;
    const r = await curl('client', 'http://10.96.0.10/');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.body?.pod, 'web-1');
    // The server sees the node proxy, not the client pod: the connection was captured.
    assert.notEqual(r.body?.peer.split(':')[0], tbd.podIP('client'));
    const rows = await flows('n1');
    const row = rows.find((f) => f.destination.service === 'shop/web');
    assert.ok(row, `no flow to shop/web in ${JSON.stringify(rows)}`);
    assert.equal(row.source.pod, 'shop/client');
    assert.equal(row.source.ip, tbd.podIP('client'));
    assert.deepEqual(
      { ip: row.destination.ip, port: row.destination.port },
      { ip: '10.96.0.10', port: 80 },
    );
    assert.equal(row.endpoint?.pod, 'shop/web-1');
    assert.equal(row.endpoint?.node, 'n1');
    assert.equal(row.endpoint?.port, 8080);
  });

  it('serves a Service from a pod on the other node; the flow counts the bytes each way', async () => {
    const sent = 200_000;
    const r = await tcpClient('client', '10.96.0.12', 7000, sent);
    assert.equal(r.error, null);
    assert.deepEqual({ sent: r.sent, received: r.received }, { sent, received: sent });
    const row = await a('n1').until('the flow to be closed', async () => {
      const found = (await flows('n1')).find((f) => f.source.port === r.localPort);
      return found?.state === 'closed' ? found : undefined;
    });
    assert.equal(row.source.pod, 'shop/client');
    assert.equal(row.destination.service, 'shop/echo-remote');
    assert.equal(row.endpoint?.pod, 'shop/web-2');
    assert.equal(row.endpoint?.node, 'n2');
    assert.equal(row.endpoint?.port, 9000);
    assert.equal(row.bytesSent, sent);
    assert.equal(row.bytesReceived, sent);
    assert.ok((row.packetsSent ?? 0) > 0 && (row.packetsReceived ?? 0) > 0);
  });

  it('captures no connection of pods outside the mesh or of the host; their plaintext to a mesh pod goes through its proxy', async () => {
    const tbd = tb as Testbed;
    const web1 = `http://${tbd.podIP('web-1')}:8080/`;
    // Un-enrolled pod to a mesh pod (PERMISSIVE, the default): not captured at its source; the
    // destination's proxy takes it through its plaintext listener and dials the pod from the
    // node's address, as for mesh traffic.
    const plain = await curl('plain', web1);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.body?.peer.split(':')[0], tbd.nodeIP('n1'));
    // Un-enrolled pod to a VIP: nobody redirects it, so nothing serves it (no kube-proxy here).
    const vip = await curl('plain', 'http://10.96.0.10/');
    assert.notEqual(vip.code, 0);
    // Enrolled pod to a pod outside the mesh: direct.
    const out = await curl('client', `http://${tbd.podIP('plain')}:8080/`);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.body?.peer.split(':')[0], tbd.podIP('client'));
    // The node itself (not in any pod cgroup) to a mesh pod: direct.
    const host = await tbd.exec({ node: 'n1' }, ['curl', '-sS', '--max-time', '5', web1]);
    assert.equal(host.code, 0, host.stderr);
    const rows = await flows('n1');
    assert.equal(rows.filter((f) => f.direction === 'outbound' && f.source.ip === tbd.podIP('plain')).length, 0, 'captured from the un-enrolled pod');
    assert.equal(rows.filter((f) => f.destination.ip === tbd.podIP('plain')).length, 0, 'flow to a non-mesh pod');
    assert.equal(rows.filter((f) => f.direction === 'outbound' && f.destination.ip === tbd.podIP('web-1')).length, 0, 'captured from the host');
    const plaintext = rows.filter((f) => f.direction === 'inbound' && f.destination.ip === tbd.podIP('web-1'));
    assert.deepEqual(
      plaintext.map((f) => [f.source.ip === tbd.podIP('plain') ? 'plain' : 'host', f.security]).sort(),
      [['host', 'none'], ['plain', 'none']],
      JSON.stringify(plaintext),
    );
  });

  it('resets at once a connection to a Service that has no endpoint', async () => {
    const started = Date.now();
    const r = await tcpClient('client', '10.96.0.14', 80, 10);
    assert.ok(r.error === 'ECONNRESET' || r.error === 'EPIPE', `got ${JSON.stringify(r)}`);
    assert.ok(Date.now() - started < 3000, 'the connection was left hanging');
    // The reset can beat the client's own connect callback, so its local port may be unknown.
    const row = (await flows('n1')).find((f) => f.destination.service === 'shop/nobody');
    assert.equal(row?.responseFlags, 'UH');
    assert.equal(row?.endpoint, null);
  });

  it('follows configuration changes without a restart: a new backend joins, a removed one leaves', async () => {
    const before = (await status('n1')).config.version;
    const grown = structuredClone(baseDocs);
    podDoc(grown, 'web-1b').metadata.labels.app = 'web';
    writeConfig(configFile, grown);
    await waitForVersion('n1', before);
    const served = new Set<string>();
    for (let i = 0; i < 8; i++) served.add((await curl('client', 'http://10.96.0.10/')).body?.pod ?? 'failed');
    assert.deepEqual([...served].sort(), ['web-1', 'web-1b']);

    const mid = (await status('n1')).config.version;
    writeConfig(configFile, grown.filter((d) => d !== podDoc(grown, 'web-1')));
    await waitForVersion('n1', mid);
    const after = new Set<string>();
    for (let i = 0; i < 6; i++) after.add((await curl('client', 'http://10.96.0.10/')).body?.pod ?? 'failed');
    assert.deepEqual([...after], ['web-1b']);

    const last = (await status('n1')).config.version;
    writeConfig(configFile, baseDocs);
    await waitForVersion('n1', last);
  });

  it('rejects bad input with a clear error and keeps serving on the last good state', async () => {
    const good = await status('n1');
    writeConfig(configFile, 'apiVersion: v1\nkind: Service\nmetadata: [unclosed\n');
    await a('n1').until('the YAML error in the log', async () => (/mesh\.yaml:\d+:\d+: invalid YAML/.test(a('n1').output) ? true : undefined));
    assert.equal((await status('n1')).config.version, good.config.version);
    assert.equal((await curl('client', 'http://10.96.0.10/')).body?.pod, 'web-1');

    const bad = structuredClone(baseDocs);
    (bad.find((d) => d.kind === 'Service' && d.metadata.name === 'web') as Doc).spec.ports[0].port = 70000;
    podDoc(bad, 'web-1b').metadata.annotations['nodemesh.io/cgroup'] = '/sys/fs/cgroup/does-not-exist/web-1b';
    bad.push({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } });
    writeConfig(configFile, bad);
    const s = await a('n1').until('the rejections in status', async () => {
      const st = await status('n1');
      return st.config.rejections.length >= 3 ? st : undefined;
    });
    const texts = s.config.rejections.map((r) => `${r.resource} ${r.field} ${r.reason}`);
    assert.ok(texts.some((t) => t.includes('Service shop/web') && t.includes('spec.ports[0].port')), texts.join('\n'));
    assert.ok(texts.some((t) => t.includes('Pod shop/web-1b') && t.includes('nodemesh.io/cgroup')), texts.join('\n'));
    assert.ok(texts.some((t) => t.includes('Widget')), texts.join('\n'));
    // The rejected Service keeps its last good version: still served.
    assert.equal((await curl('client', 'http://10.96.0.10/')).body?.pod, 'web-1');
    assert.equal((await status('n1')).enrolledPods, good.enrolledPods);

    writeConfig(configFile, baseDocs);
    await a('n1').until('a clean reload', async () => ((await status('n1')).config.rejections.length === 0 ? true : undefined));
  });

  it('restarts without stale attachments; --cleanup removes every attachment and pin', async () => {
    const tbd = tb as Testbed;
    const cgroup = tbd.nodeCgroup('n1');
    const attached = () =>
      (JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup]).toString().trim() || '[]') as Array<{ attach_type: string }>)
        .map((p) => p.attach_type)
        .sort();
    assert.deepEqual(attached(), ['cgroup_inet4_connect', 'cgroup_inet_ingress', 'cgroup_sock_ops']);
    const agent = a('n1');
    assert.equal(await agent.stop(), 0);
    await agent.start(configFile);
    assert.deepEqual(attached(), ['cgroup_inet4_connect', 'cgroup_inet_ingress', 'cgroup_sock_ops']);
    assert.equal((await curl('client', 'http://10.96.0.10/')).body?.pod, 'web-1');

    await agent.stop();
    const cleanup = await agent.cli(['agent', '--cleanup', '--bpffs', agent.bpffs]);
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.deepEqual(attached(), []);
    assert.equal(existsSync(agent.bpffs), false);
    // With nothing attached the pod is no longer captured: a mesh pod is reached directly.
    const direct = await curl('client', `http://${tbd.podIP('web-1')}:8080/`);
    assert.equal(direct.body?.peer.split(':')[0], tbd.podIP('client'));
  });
});
