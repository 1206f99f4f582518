// End to end on the netns testbed: Services without a selector, served from their
// EndpointSlices. An address the mesh knows no pod for is dialled by the node proxy in
// plaintext; an address that is a mesh pod's IP is that pod, reached through HBONE.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import type { FlowRow } from '../agent/src/telemetry/flow-table.js';
import type { ServiceView } from '../agent/src/admin/views.js';
import { AgentProcess, FIXTURES } from '../scripts/testbed/agent.js';
import { testbedDocs, writeConfig, type Doc } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;

const selectorless = (name: string, clusterIP: string, ports: Doc[]): Doc => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'shop' },
  spec: { clusterIP, ports },
});

const slice = (service: string, endpoints: Doc[], ports: Doc[]): Doc => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${service}-1`, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } },
  addressType: 'IPv4',
  endpoints,
  ports,
});

describe('Services without a selector, from EndpointSlices', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed | undefined;
  let dir: string | undefined;
  const agents: AgentProcess[] = [];
  const a = (node: string) => agents.find((x) => x.node === node) as AgentProcess;
  const flows = (node: string) => a(node).json<FlowRow[]>(['flows']);

  const curl = async (url: string) => {
    const r = await (tb as Testbed).exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '5', url]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { pod: string; peer: string };
  };
  const tcpClient = async (host: string, port: number, n: number) => {
    const r = await (tb as Testbed).exec({ pod: 'client' }, [process.execPath, path.join(FIXTURES, 'tcp-client.mjs'), host, String(port), String(n)]);
    return JSON.parse(r.stdout) as { sent: number; received: number; localPort: number; error: string | null };
  };
  const closedFlow = (node: string, match: (f: FlowRow) => boolean) =>
    a(node).until(`a closed flow on ${node}`, async () => (await flows(node)).find((f) => match(f) && f.state === 'closed'));

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        { name: 'n1', pods: [{ name: 'client', namespace: 'shop', labels: { app: 'client' } }] },
        {
          name: 'n2',
          pods: [
            { name: 'db-0', namespace: 'shop', labels: { app: 'db' }, serviceAccount: 'db' },
            { name: 'legacy-db', namespace: 'legacy', labels: { app: 'legacy-db' } },
          ],
        },
      ],
      namespaces: { shop: { 'nodemesh.io/mode': 'enabled' }, legacy: {} },
    });
    await Promise.all(['db-0', 'legacy-db'].map((p) => (tb as Testbed).startServer(p)));
    const outside = tb.podIP('legacy-db');
    const docs: Doc[] = [
      // legacy-db stands for a VM or an external database: no Pod object tells the mesh of it.
      ...testbedDocs(tb).filter((d) => !(d.kind === 'Pod' && (d.metadata as { name: string }).name === 'legacy-db')),
      // (a) An address the mesh knows no pod for, on an opaque TCP port and an HTTP one.
      selectorless('external-db', '10.96.0.30', [
        { name: 'tcp', port: 80, protocol: 'TCP', appProtocol: 'tcp' },
        { name: 'http', port: 8080, protocol: 'TCP' },
      ]),
      slice('external-db', [{ addresses: [outside] }], [{ name: 'tcp', port: 9000 }, { name: 'http', port: 8080 }]),
      // (b) A mesh pod's address: reached like a selector endpoint, through HBONE.
      selectorless('mesh-db', '10.96.0.31', [{ port: 80, protocol: 'TCP' }]),
      slice('mesh-db', [{ addresses: [tb.podIP('db-0')], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'db-0', namespace: 'shop' }, nodeName: 'n2' }], [{ port: 8080, protocol: 'TCP' }]),
    ];
    dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-eps-'));
    const configFile = path.join(dir, 'mesh.yaml');
    writeConfig(configFile, docs);
    for (const node of ['n1', 'n2']) {
      const agent = new AgentProcess(tb, node);
      agents.push(agent);
      await agent.start(configFile);
    }
  });

  after(async () => {
    try {
      for (const agent of agents) await agent.remove();
    } finally {
      await tb?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists the endpoints of both Services: an external address, and a pod with its node', async () => {
    const services = await a('n1').json<ServiceView[]>(['services']);
    const endpoints = (name: string) => services.find((s) => s.name === name)?.ports.map((p) => [p.port, p.endpoints]);
    assert.deepEqual(endpoints('external-db'), [
      [80, [{ ip: (tb as Testbed).podIP('legacy-db'), port: 9000, pod: null, node: null }]],
      [8080, [{ ip: (tb as Testbed).podIP('legacy-db'), port: 8080, pod: null, node: null }]],
    ]);
    assert.deepEqual(endpoints('mesh-db'), [[80, [{ ip: (tb as Testbed).podIP('db-0'), port: 8080, pod: 'shop/db-0', node: 'n2' }]]]);
    const table = await a('n1').cli(['services']);
    assert.match(table.stdout, new RegExp(`${(tb as Testbed).podIP('legacy-db').replaceAll('.', '\\.')}:8080 \\(external\\)`));
    assert.match(table.stdout, /db-0@n2/);
  });

  it('relays TCP to an external endpoint from the node, in plaintext, without HBONE', async () => {
    const tbd = tb as Testbed;
    const sent = 50_000;
    const r = await tcpClient('10.96.0.30', 80, sent);
    assert.equal(r.error, null);
    assert.deepEqual({ sent: r.sent, received: r.received }, { sent, received: sent });
    const row = await closedFlow('n1', (f) => f.source.port === r.localPort);
    assert.equal(row.destination.service, 'shop/external-db');
    assert.deepEqual(row.endpoint, { ip: tbd.podIP('legacy-db'), port: 9000, pod: null, node: null });
    assert.equal(row.security, 'none');
    assert.equal(row.responseFlags, '-');
    assert.equal(row.bytesSent, sent);
    const shown = await a('n1').cli(['flows']);
    assert.match(shown.stdout, /plain/);
    // Istio's metrics: the Service is named, no workload is known at the other end, no mTLS.
    const metrics = await tbd.exec({ node: 'n1' }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
    const closed = metrics.stdout.split('\n').filter((l) => l.startsWith('istio_tcp_connections_closed_total{') && l.includes('destination_service_name="external-db"'));
    assert.equal(closed.length, 1, metrics.stdout);
    assert.match(closed[0]!, /connection_security_policy="none"/);
    assert.match(closed[0]!, /destination_workload="unknown"/);
    assert.match(closed[0]!, /reporter="source"/);
  });

  it('proxies HTTP to an external endpoint; the server sees the node, and the other node proxy sees nothing', async () => {
    const tbd = tb as Testbed;
    const body = await curl('http://10.96.0.30:8080/');
    assert.equal(body.pod, 'legacy-db');
    assert.equal(body.peer.split(':')[0], tbd.nodeIP('n1'));
    const row = await closedFlow('n1', (f) => f.destination.service === 'shop/external-db' && f.destination.port === 8080);
    assert.deepEqual(row.endpoint, { ip: tbd.podIP('legacy-db'), port: 8080, pod: null, node: null });
    assert.equal(row.security, 'none');
    assert.deepEqual((await flows('n2')).filter((f) => f.direction === 'inbound'), [], 'no tunnel reached n2');
  });

  it("reaches a mesh pod by its address through HBONE, with the client identity at the destination", async () => {
    const tbd = tb as Testbed;
    const body = await curl('http://10.96.0.31/');
    assert.equal(body.pod, 'db-0');
    // The destination node's proxy dials the pod from its own address.
    assert.equal(body.peer.split(':')[0], tbd.nodeIP('n2'));
    const out = await closedFlow('n1', (f) => f.destination.service === 'shop/mesh-db');
    assert.deepEqual(out.endpoint, { ip: tbd.podIP('db-0'), port: 8080, pod: 'shop/db-0', node: 'n2' });
    assert.equal(out.security, 'mutual_tls');
    // Open or closed: the tunnel of a pooled upstream connection stays open until the pod ends it.
    const inbound = await a('n2').until('the inbound flow on n2', async () => (await flows('n2')).find((f) => f.direction === 'inbound' && f.destination.ip === tbd.podIP('db-0')));
    assert.equal(inbound.source.identity, 'spiffe://cluster.local/ns/shop/sa/default');
    assert.equal(inbound.security, 'mutual_tls');
  });
});
