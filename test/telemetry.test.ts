// Telemetry end to end on the netns testbed: Istio's TCP metrics from both reporters after
// known traffic (checked by promtool), nodemesh's own metrics, the access log, and the
// operator's CLI views (workloads, services, config dump, filtered and watched flows; flows in an
// 80-column tmux pane).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import { AgentProcess, CLI, FIXTURES } from '../scripts/testbed/agent.js';
import { promtoolFindings } from '../scripts/testbed/promtool.js';
import { serviceDoc, testbedDocs, writeConfig } from '../scripts/testbed/mesh-config.js';
import type { FlowRow } from '../agent/src/telemetry/flow-table.js';
import type { AgentStatus } from '../agent/src/app.js';
import type { ServiceView, WorkloadView, ConfigDump } from '../agent/src/admin/views.js';

const isRoot = process.getuid?.() === 0;
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
const hasTmux = spawnSync('tmux', ['-V']).status === 0;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text exposition format, enough for the assertions: one sample per line. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

const sum = (samples: Sample[], name: string, want: Record<string, string>) =>
  samples
    .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
    .reduce((total, s) => total + s.value, 0);

describe('telemetry: Istio metrics, access log and the CLI views', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  let dir: string;
  const agents = new Map<string, AgentProcess>();
  const agent = (node: string) => agents.get(node) as AgentProcess;
  const N = 3;
  const BYTES = 50_000;
  const localPorts: number[] = [];

  const scrape = async (node: string, urlPath = '/metrics') => {
    const r = await tb.exec({ node }, ['curl', '-sS', '--max-time', '5', `http://127.0.0.1:15020${urlPath}`]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const accessLines = (node: string) =>
    agent(node)
      .output.split('\n')
      .filter((l) => l.includes('"type":"access"'))
      .map((l) => JSON.parse(l) as Record<string, any>);

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: 'shop', labels: { app: 'client', version: 'v1' } },
            { name: 'web-1', namespace: 'shop', labels: { app: 'web', 'service.istio.io/canonical-name': 'storefront' } },
          ],
        },
        { name: 'n2', pods: [{ name: 'web-2', namespace: 'shop', labels: { app: 'web-remote', version: 'v2' } }] },
      ],
      namespaces: { shop: { 'nodemesh.io/mode': 'enabled' } },
    });
    await Promise.all(['web-1', 'web-2'].map((p) => tb.startServer(p)));
    dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-telemetry-'));
    const configFile = path.join(dir, 'mesh.yaml');
    writeConfig(configFile, [
      ...testbedDocs(tb),
      serviceDoc({ name: 'web', namespace: 'shop', clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080, appProtocol: 'tcp' }] }),
      serviceDoc({ name: 'echo-remote', namespace: 'shop', clusterIP: '10.96.0.12', selector: { app: 'web-remote' }, ports: [{ port: 7000, targetPort: 'echo' }] }),
    ]);
    for (const node of ['n1', 'n2']) {
      agents.set(node, new AgentProcess(tb, node));
      await agent(node).start(configFile);
    }
    // Known traffic: N connections from n1's client to a service on n2, each echoing BYTES.
    for (let i = 0; i < N; i++) {
      const r = await tb.exec({ pod: 'client' }, [process.execPath, path.join(FIXTURES, 'tcp-client.mjs'), '10.96.0.12', '7000', String(BYTES)]);
      const result = JSON.parse(r.stdout) as { sent: number; received: number; localPort: number; error: string | null };
      assert.deepEqual({ sent: result.sent, received: result.received, error: result.error }, { sent: BYTES, received: BYTES, error: null });
      localPorts.push(result.localPort);
    }
    for (const [node, direction] of [['n1', 'outbound'], ['n2', 'inbound']] as const) {
      await agent(node).until(`${N} closed ${direction} flows on ${node}`, async () => {
        const rows = await agent(node).json<FlowRow[]>(['flows', '--service', 'echo-remote', '--state', 'closed']);
        const mine = direction === 'inbound' ? (await agent(node).json<FlowRow[]>(['flows', '--pod', 'web-2'])).filter((r) => r.state === 'closed') : rows;
        return mine.length >= N ? true : undefined;
      });
    }
  });

  after(async () => {
    try {
      for (const a of agents.values()) {
        await a.remove();
      }
    } finally {
      await tb?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('both reporters count the same connections and bytes, with Istio labels', async () => {
    const base = {
      source_workload: 'client',
      source_workload_namespace: 'shop',
      source_principal: 'spiffe://cluster.local/ns/shop/sa/default',
      source_app: 'client',
      source_version: 'v1',
      destination_service: 'echo-remote.shop.svc.cluster.local',
      destination_service_name: 'echo-remote',
      destination_service_namespace: 'shop',
      destination_workload: 'web-2',
      destination_workload_namespace: 'shop',
      destination_principal: 'spiffe://cluster.local/ns/shop/sa/default',
      destination_canonical_service: 'web-remote',
      destination_version: 'v2',
      request_protocol: 'tcp',
      response_flags: '-',
      connection_security_policy: 'mutual_tls',
    };
    for (const [node, reporter] of [['n1', 'source'], ['n2', 'destination']] as const) {
      const samples = parseExposition(await scrape(node));
      const want = { ...base, reporter };
      assert.equal(sum(samples, 'istio_tcp_connections_opened_total', want), N, `${node} opened`);
      assert.equal(sum(samples, 'istio_tcp_connections_closed_total', want), N, `${node} closed`);
      assert.equal(sum(samples, 'istio_tcp_received_bytes_total', want), N * BYTES, `${node} received (request) bytes`);
      assert.equal(sum(samples, 'istio_tcp_sent_bytes_total', want), N * BYTES, `${node} sent (response) bytes`);
      // No address or port ever becomes a label value.
      for (const s of samples.filter((x) => x.name.startsWith('istio_'))) {
        for (const v of Object.values(s.labels)) assert.doesNotMatch(v, /^\d+\.\d+\.\d+\.\d+/, `${s.name} has an address label`);
      }
    }
  });

  it('a same-node connection reports for both reporters, request and response bytes the Istio way round', async () => {
    const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '5', 'http://10.96.0.10/']);
    assert.equal(r.code, 0, r.stderr);
    const row = await agent('n1').until('the closed flow to shop/web', async () =>
      (await agent('n1').json<FlowRow[]>(['flows', '--service', 'shop/web', '--state', 'closed']))[0],
    );
    assert.ok(row.bytesSent > 0 && row.bytesReceived > row.bytesSent, JSON.stringify(row));
    const samples = parseExposition(await scrape('n1'));
    for (const reporter of ['source', 'destination']) {
      const want = { reporter, destination_service: 'web.shop.svc.cluster.local', destination_workload: 'web-1', destination_canonical_service: 'storefront', destination_version: 'latest' };
      assert.equal(sum(samples, 'istio_tcp_connections_closed_total', want), 1, reporter);
      assert.equal(sum(samples, 'istio_tcp_received_bytes_total', want), row.bytesSent, `${reporter}: received = what the client sent`);
      assert.equal(sum(samples, 'istio_tcp_sent_bytes_total', want), row.bytesReceived, `${reporter}: sent = what the client got`);
      assert.equal(sum(samples, 'istio_tcp_connections_closed_total', { ...want, connection_security_policy: 'mutual_tls' }), 1);
    }
  });

  it('exposes nodemesh and process metrics that promtool accepts, on both paths', { skip: hasPromtool ? false : 'promtool missing: scripts/install-deps.sh' }, async () => {
    const text = await scrape('n1');
    assert.deepEqual(promtoolFindings(text), []);
    assert.equal(await scrape('n1', '/stats/prometheus').then((t) => t.includes('istio_tcp_connections_opened_total')), true);
    const samples = parseExposition(text);
    const status = await agent('n1').json<AgentStatus>(['status']);
    assert.equal(sum(samples, 'nodemesh_config_version', {}), status.config.version);
    assert.equal(sum(samples, 'nodemesh_config_rejected_resources', {}), 0);
    for (const m of status.bpf.maps) {
      assert.equal(sum(samples, 'nodemesh_bpf_map_max_entries', { map: m.name }), m.maxEntries, m.name);
    }
    assert.ok(sum(samples, 'nodemesh_bpf_map_entries', { map: 'nm_pods' }) >= 2);
    const expiry = sum(samples, 'nodemesh_certificate_expiry_seconds', { identity: 'spiffe://cluster.local/ns/shop/sa/default' });
    assert.ok(expiry > 3600 && expiry <= 86400, `expiry ${expiry}`);
    assert.equal(sum(samples, 'nodemesh_strict_plaintext_refused_total', {}), status.bpf.plaintextRefused);
    assert.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'));
    assert.ok(samples.some((s) => s.name === 'nodemesh_open_connections' && s.labels.direction === 'outbound'));
  });

  it('writes one access log line per connection at close, at both ends', async () => {
    const out = accessLines('n1').filter((l) => l.dst.service === 'echo-remote.shop.svc.cluster.local');
    assert.equal(out.length, N, JSON.stringify(out));
    for (const port of localPorts) {
      const line = out.find((l) => l.src.addr.endsWith(`:${port}`));
      assert.ok(line, `no access line for source port ${port}`);
      assert.equal(line.direction, 'outbound');
      assert.deepEqual(
        { workload: line.src.workload, namespace: line.src.namespace, identity: line.src.identity },
        { workload: 'client', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/default' },
      );
      assert.deepEqual({ workload: line.dst.workload, addr: line.dst.addr }, { workload: 'web-2', addr: '10.96.0.12:7000' });
      assert.equal(line.endpoint.node, 'n2');
      assert.deepEqual([line.bytesSent, line.bytesReceived, line.responseFlags, line.security], [BYTES, BYTES, '-', 'mutual_tls']);
      assert.equal(typeof line.durationMs, 'number');
    }
    const inbound = accessLines('n2').filter((l) => l.dst.workload === 'web-2' && l.bytesSent === BYTES);
    assert.equal(inbound.length, N);
    assert.equal(inbound[0]?.direction, 'inbound');
    assert.equal(inbound[0]?.src.workload, 'client');
    assert.equal(inbound[0]?.authorization.decision, 'allow');
  });

  it('nodemesh workloads, services and config dump show the node as the proxy holds it', async () => {
    const w = await agent('n1').json<WorkloadView[]>(['workloads']);
    assert.deepEqual(w.map((x) => x.name), ['client', 'web-1']);
    const client = w[0] as WorkloadView;
    assert.deepEqual(
      { ip: client.ip, node: client.node, identity: client.identity, enrolled: client.enrolled, mtls: client.mtls, workload: client.workload },
      { ip: tb.podIP('client'), node: 'n1', identity: 'spiffe://cluster.local/ns/shop/sa/default', enrolled: true, mtls: 'PERMISSIVE', workload: 'client' },
    );
    assert.ok(client.cgroup.path && client.cgroup.id);
    const human = await agent('n1').cli(['workloads']);
    const lines = human.stdout.trimEnd().split('\n');
    assert.match(lines[0] as string, /^NAMESPACE\s+NAME\s+IP\s+NODE\s+ENROLLED\s+MTLS\s+IDENTITY\s+CGROUP$/);
    assert.match(lines[1] as string, new RegExp(`^shop\\s+client\\s+${tb.podIP('client').replace(/\./g, '\\.')}\\s+n1\\s+yes\\s+PERMISSIVE\\s+ns/shop/sa/default\\s+\\d+$`));
    // Aligned: every column starts where its header does.
    assert.equal(lines[1]?.indexOf('yes'), lines[0]?.indexOf('ENROLLED'));
    assert.doesNotMatch(human.stdout, /\x1b\[/, 'no colour when stdout is not a terminal');

    const services = await agent('n2').json<ServiceView[]>(['services']);
    const echo = services.find((s) => s.name === 'echo-remote');
    assert.deepEqual(echo?.ports[0]?.endpoints, [{ pod: 'shop/web-2', ip: tb.podIP('web-2'), port: 9000, node: 'n2' }]);
    const servicesText = (await agent('n1').cli(['services'])).stdout;
    assert.match(servicesText, /^shop\/echo-remote\s+10\.96\.0\.12:7000\s+echo\s+web-2@n2$/m);
    assert.match(servicesText, /^shop\/web\s+10\.96\.0\.10:80\s+8080\s+web-1@n1$/m);

    const dump = await agent('n1').json<ConfigDump>(['config', 'dump']);
    assert.equal(dump.version, (await agent('n1').json<AgentStatus>(['status'])).config.version);
    assert.deepEqual(dump.services.map((s) => s.name).sort(), ['echo-remote', 'web']);
    assert.deepEqual(dump.rejections, []);
    const dumpText = (await agent('n1').cli(['config', 'dump'])).stdout;
    assert.match(dumpText, /^Service\s+shop\s+echo-remote$/m);
    assert.match(dumpText, /^Pod\s+shop\s+web-2$/m);
  });

  it('nodemesh flows filters by namespace, pod, service and state', async () => {
    const byService = await agent('n1').json<FlowRow[]>(['flows', '--service', 'echo-remote']);
    assert.equal(byService.length, N);
    assert.ok(byService.every((r) => r.destination.service === 'shop/echo-remote'));
    const byPod = await agent('n1').json<FlowRow[]>(['flows', '--pod', 'web-1']);
    assert.ok(byPod.length >= 1 && byPod.every((r) => r.endpoint?.pod === 'shop/web-1'));
    assert.equal((await agent('n1').json<FlowRow[]>(['flows', '--namespace', 'shop'])).length, N + byPod.length);
    assert.deepEqual(await agent('n1').json<FlowRow[]>(['flows', '--namespace', 'elsewhere']), []);
    assert.deepEqual(await agent('n1').json<FlowRow[]>(['flows', '--state', 'open']), []);
    assert.equal((await agent('n1').cli(['flows', '--namespace', 'elsewhere'])).stdout, 'no flows yet\n');
    const bad = await agent('n1').cli(['flows', '--state', 'half']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--state.*half/);
  });

  it('nodemesh flows, human form: aligned within 80 columns off a terminal, no colour', async () => {
    const human = await agent('n1').cli(['flows', '--service', 'echo-remote']);
    const lines = human.stdout.trimEnd().split('\n');
    assert.equal(lines.length, N + 1);
    for (const l of lines) assert.ok(l.length <= 80, `${l.length} columns: ${l}`);
    assert.match(lines[0] as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE\s+TIME\s+SEC$/);
    for (const row of lines.slice(1)) {
      assert.match(row, /^out\s+(shop\/)?client\s+(shop\/)?echo-remote:7000\s+(shop\/)?web-2@n2\s+48\.8K\s+48\.8K\s+closed\s+\S+\s+mTLS$/);
      assert.equal(row.indexOf('48.8K'), lines[0]?.indexOf('SENT'));
    }
    assert.doesNotMatch(human.stdout, /\x1b\[/, 'no colour when stdout is not a terminal');
  });

  it('nodemesh flows, in an 80-column terminal: every line fits', { skip: hasTmux ? false : 'tmux missing' }, async () => {
    const socket = `nodemesh-${tb.id}`;
    const tmux = (...args: string[]) => spawnSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
    const started = tmux('new-session', '-d', '-s', 'flows', '-x', '80', '-y', '24', 'nsenter', `--net=${tb.netnsPath('n1')}`, '--', process.execPath, CLI, 'flows', '--watch', '--service', 'echo-remote');
    assert.equal(started.status, 0, started.stderr);
    try {
      const screen = await agent('n1').until('flows to draw echo-remote', async () => {
        const pane = tmux('capture-pane', '-p', '-t', 'flows');
        return pane.stdout.includes('echo-remote') ? pane.stdout : undefined;
      });
      const lines = screen.split('\n');
      for (const l of lines) assert.ok(l.length <= 80, `${l.length} columns: ${l}`);
      assert.match(lines[0] as string, new RegExp(`${N} flows, every 1s; Ctrl-C to stop`));
      assert.match(lines[1] as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE\s+TIME\s+SEC$/);
      for (const row of lines.slice(2, 2 + N)) assert.match(row, /^out\s+\S*client\s+\S*echo-remote:7000\s+\S*web-2@n2\s+48\.8K\s+48\.8K\s+closed\s+\S+\s+mTLS$/);
    } finally {
      tmux('kill-server');
    }
  });

  it('nodemesh flows --watch prints a snapshot a second without a terminal and stops on Ctrl-C', async () => {
    const r = await tb.exec({ node: 'n1' }, ['timeout', '--preserve-status', '-s', 'INT', '2.5', process.execPath, CLI, 'flows', '--watch', '--service', 'echo-remote']);
    assert.equal(r.code, 0, r.stderr);
    const snapshots = r.stdout.trimEnd().split('\n\n');
    assert.ok(snapshots.length >= 2 && snapshots.length <= 4, `${snapshots.length} snapshots:\n${r.stdout}`);
    for (const s of snapshots) {
      const lines = s.split('\n');
      assert.match(lines[0] as string, /^DIR\s+SOURCE\s+DESTINATION/);
      assert.equal(lines.length, N + 1);
    }
  });
});
