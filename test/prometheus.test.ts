// Istio's request metrics read by Debian's real Prometheus: known HTTP traffic through the mesh
// (a Service on another node and one on the same node, answered 200 or 503), a Prometheus
// server in the source node's network namespace scraping the agent every second, then the
// PromQL a dashboard would run; promtool on the exposition, and the request access log lines.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Testbed, fixturePath } from '../scripts/testbed/testbed.js';
import { AgentProcess } from '../scripts/testbed/agent.js';
import { promtoolFindings } from '../scripts/testbed/promtool.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;
const hasPrometheus = ['prometheus', 'promtool'].every((bin) => spawnSync(bin, ['--version']).status === 0);
const skip = !isRoot ? 'needs root: BPF, netns and cgroups' : !hasPrometheus ? 'prometheus and promtool missing: apt-get install prometheus' : false;

const NS = 'shop';
const WEB = 'web.shop.svc.cluster.local';
const API = 'api.shop.svc.cluster.local';
/** What the test sends, and the status each request is answered. */
const TRAFFIC = [
  { vip: '10.96.0.20', path: '/items', requests: 12, service: WEB, status: '200' },
  { vip: '10.96.0.20', path: '/status/503', requests: 5, service: WEB, status: '503' },
  { vip: '10.96.0.21', path: '/health', requests: 7, service: API, status: '200' },
] as const;
/** The HTTPRoute retries a 503 twice before passing it on. */
const RETRIES_PER_503 = 2;
const SCRAPE_WAIT_MS = 30_000;

const PER_SERVICE_AND_CODE = 'sum by (destination_service, response_code) (istio_requests_total{reporter="source"})';

describe('Prometheus reads Istio request metrics from a node', { skip }, () => {
  let tb: Testbed;
  const agents: AgentProcess[] = [];
  const agent = () => agents[0] as AgentProcess;
  let prometheus: ChildProcess | undefined;
  let promLog = '';
  let promPort = 0;
  let dir = '';

  const inNode = async (argv: string[], timeoutMs = 10_000) => {
    const r = await tb.exec({ node: 'n1' }, argv, { timeoutMs });
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  /** An instant PromQL query against the test's Prometheus, as {label values in label-name order: value}. */
  const query = async (promql: string): Promise<Record<string, number>> => {
    const body = await inNode(['curl', '-sS', '--max-time', '5', '-G', '--data-urlencode', `query=${promql}`, `http://127.0.0.1:${promPort}/api/v1/query`]);
    const answer = JSON.parse(body) as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    assert.equal(answer.status, 'success', body);
    return Object.fromEntries(answer.data.result.map((r) => [Object.keys(r.metric).sort().map((k) => r.metric[k]).join(' '), Number(r.value[1])]));
  };
  /** Polls the query until it returns `want` (the scrapes after the traffic have landed). */
  const eventually = async (promql: string, want: Record<string, number>) => {
    const deadline = Date.now() + SCRAPE_WAIT_MS;
    let got: Record<string, number> = {};
    while (Date.now() < deadline) {
      got = await query(promql);
      if (JSON.stringify(sorted(got)) === JSON.stringify(sorted(want))) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.deepEqual(sorted(got), sorted(want), `${promql}\nPrometheus log:\n${promLog.slice(-2000)}`);
  };

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: NS, labels: { app: 'client' } },
            { name: 'api-1', namespace: NS, labels: { app: 'api' } },
          ],
        },
        { name: 'n2', pods: [{ name: 'web-2', namespace: NS, labels: { app: 'web' } }] },
      ],
      namespaces: { [NS]: { 'nodemesh.io/mode': 'enabled' } },
    });
    dir = path.join(tb.scratchDir, 'prometheus');
    mkdirSync(dir, { recursive: true });
    await Promise.all(['web-2', 'api-1'].map((pod) => tb.startFixture(pod, 'http-backend.mjs', ['--port', '8080', '--name', pod])));
    const route: Doc = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace: NS },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
        rules: [
          { matches: [{ path: { type: 'PathPrefix', value: '/status/503' } }], retry: { codes: [503], attempts: RETRIES_PER_503, backoff: '5ms' }, backendRefs: [{ name: 'web', port: 80 }] },
          { backendRefs: [{ name: 'web', port: 80 }] },
        ],
      },
    };
    const configFile = path.join(dir, 'mesh.yaml');
    writeConfig(configFile, [
      ...testbedDocs(tb),
      serviceDoc({ name: 'web', namespace: NS, clusterIP: '10.96.0.20', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] }),
      serviceDoc({ name: 'api', namespace: NS, clusterIP: '10.96.0.21', selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] }),
      route,
    ]);
    // n2's agent serves the HBONE inbound of the cross-node Service.
    for (const node of ['n1', 'n2']) {
      agents.push(new AgentProcess(tb, node));
      await agents.at(-1)?.start(configFile);
    }

    for (const t of TRAFFIC) {
      const r = await tb.exec(
        { pod: 'client' },
        [process.execPath, fixturePath('http-load.mjs'), '--url', `http://${t.vip}${t.path}`, '--requests', String(t.requests), '--timeout-ms', '3000', '--max-ms', '20000'],
        { timeoutMs: 25_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      const load = JSON.parse(r.stdout) as { statuses: Record<string, number>; errors: Record<string, number> };
      assert.deepEqual({ statuses: load.statuses, errors: load.errors }, { statuses: { [t.status]: t.requests }, errors: {} }, `${t.vip}${t.path}`);
    }

    promPort = Number(
      await inNode([process.execPath, '-e', "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"]),
    );
    const config = path.join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
        'scrape_configs:',
        // Istio's scrape path for a mesh proxy.
        '  - { job_name: nodemesh, metrics_path: /stats/prometheus, static_configs: [{ targets: ["127.0.0.1:15020"] }] }',
        '',
      ].join('\n'),
    );
    prometheus = tb.spawnInNode('n1', [
      'prometheus',
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ]);
    // Read its output, or a full pipe would stall it.
    const keep = (chunk: Buffer) => (promLog = (promLog + chunk.toString()).slice(-16_384));
    prometheus.stdout?.on('data', keep);
    prometheus.stderr?.on('data', keep);
    await agent().until('Prometheus ready', async () => {
      const r = await tb.exec({ node: 'n1' }, ['curl', '-sf', '--max-time', '2', `http://127.0.0.1:${promPort}/-/ready`]);
      return r.code === 0 ? true : undefined;
    }, 20_000);
  });

  after(async () => {
    try {
      if (prometheus?.pid !== undefined && prometheus.exitCode === null) {
        const exited = new Promise((r) => prometheus?.once('exit', r));
        process.kill(-prometheus.pid, 'SIGKILL');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      }
      for (const a of agents) await a.remove();
    } finally {
      await tb?.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  it('PromQL counts exactly the requests sent, by destination service and response code', async () => {
    await eventually(PER_SERVICE_AND_CODE, sent((t) => `${t.service} ${t.status}`));
    const total = TRAFFIC.reduce((n, t) => n + t.requests, 0);
    await eventually('sum(istio_request_duration_milliseconds_count{reporter="source"})', { '': total });
    await eventually('sum(istio_response_bytes_count{reporter="source",request_protocol="http"})', { '': total });
    const failed = TRAFFIC.filter((t) => t.status === '503').reduce((n, t) => n + t.requests, 0);
    await eventually('sum by (destination_service) (nodemesh_http_retries_total)', { [WEB]: failed * RETRIES_PER_503 });
    // The same-node Service is answered by a pod on n1, the other by one on n2.
    await eventually(
      'sum by (destination_workload, destination_service) (istio_requests_total{reporter="source",connection_security_policy="mutual_tls"})',
      sent((t) => `${t.service} ${t.service === WEB ? 'web-2' : 'api-1'}`),
    );
  });

  it('promtool check metrics accepts the exposition (but for Istio\'s milliseconds name)', async () => {
    const text = await inNode(['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
    assert.match(text, /^istio_request_duration_milliseconds_bucket\{le="3600000",reporter="source",/m);
    assert.deepEqual(promtoolFindings(text), []);
  });

  it('writes one request access log line per request, with status and route', () => {
    // The source's lines; the destination writes its own, one per attempt it served.
    const lines = agent().output
      .split('\n')
      .filter((l) => l.includes('"type":"request"'))
      .map((l) => JSON.parse(l) as Record<string, any>)
      .filter((l) => l.reporter === 'source');
    for (const t of TRAFFIC) {
      const mine = lines.filter((l) => l.dst.service === t.service && l.path === t.path);
      assert.equal(mine.length, t.requests, `${t.service}${t.path}`);
      assert.ok(mine.every((l) => String(l.status) === t.status && l.src.workload === 'client' && l.method === 'GET' && l.protocol === 'http'));
    }
    const retried = lines.filter((l) => l.path === '/status/503');
    assert.ok(retried.every((l) => l.retries === RETRIES_PER_503 && l.route === 'HTTPRoute shop/web' && l.endpoint.node === 'n2'));
  });
});

/** Requests sent, summed by key. */
function sent(key: (t: (typeof TRAFFIC)[number]) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of TRAFFIC) out[key(t)] = (out[key(t)] ?? 0) + t.requests;
  return out;
}

const sorted = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
