// Both reporters end to end on the netns testbed: a client pod sends HTTP/1.1, h2c and gRPC
// requests to a backend on its own node and to one on the other node (HBONE); the source
// node's L7 proxy and the destination's inbound filters each record every request: the
// access log lines of both reporters match one to one by request id, and istio_requests_total
// counts the same at both ends.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import { AgentProcess, FIXTURES } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;
const NS = 'shop';
const HTTP_PORT = 8080;
const GRPC_PORT = 9090;
/** Requests per protocol and target. */
const N = 20;
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';

const VIP = { httpLocal: '10.96.0.10', httpRemote: '10.96.0.11', grpcLocal: '10.96.0.20', grpcRemote: '10.96.0.21' } as const;
/** Same node: web-1 on n1 with the client; other node: web-2 on n2, behind a policy with HTTP fields. */
const TARGETS = [
  { name: 'same node', http: VIP.httpLocal, grpc: VIP.grpcLocal, node: 'n1', pod: 'shop/web-1', security: 'node_local' },
  { name: 'cross node', http: VIP.httpRemote, grpc: VIP.grpcRemote, node: 'n2', pod: 'shop/web-2', security: 'mutual_tls' },
] as const;

interface LoadResult {
  completed: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
}
/** An access log line of one request (telemetry/access-log.ts). */
interface AccessLine {
  msg: string;
  reporter: 'source' | 'destination';
  src: { addr: string; pod: string | null; namespace: string | null; identity: string | null };
  dst: { service: string | null; pod: string | null; namespace: string | null };
  endpoint: { addr: string; node: string } | null;
  protocol: 'http' | 'grpc';
  httpVersion: string;
  method: string;
  path: string;
  status: number;
  grpcStatus: number | null;
  responseFlags: string;
  requestId: string | null;
  authorization: { decision: string; policy?: string } | null;
  security: string;
}
interface GrpcResult {
  ok: number;
  codes: Record<string, number>;
  errors: string[];
}

describe('request telemetry at both ends: source and destination reporters agree', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  const agents = new Map<string, AgentProcess>();

  const fixtureJson = async <T>(script: string, args: string[]): Promise<T> => {
    const r = await tb.exec({ pod: 'client' }, [process.execPath, path.join(FIXTURES, script), ...args], { timeoutMs: 45_000 });
    assert.equal(r.code, 0, `${script} ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const load = (url: string, args: string[] = []) =>
    fixtureJson<LoadResult>('http-load.mjs', ['--url', url, '--requests', String(N), '--concurrency', '2', '--timeout-ms', '3000', '--max-ms', '40000', ...args]);
  /** The request lines of a node's access log (the agent's stdout). */
  const accessLog = (node: string, reporter: AccessLine['reporter']): AccessLine[] =>
    agents
      .get(node)!
      .output.split('\n')
      .filter((l) => l.includes('"msg":"request"'))
      .map((l) => JSON.parse(l) as AccessLine)
      .filter((l) => l.reporter === reporter);
  /** istio_requests_total of a node by reporter and the labels both ends must agree on. */
  const requestCounts = async (node: string): Promise<Map<string, number>> => {
    const r = await tb.exec({ node }, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:15020/metrics']);
    assert.equal(r.code, 0, r.stderr);
    const counts = new Map<string, number>();
    for (const line of r.stdout.split('\n').filter((l) => l.startsWith('istio_requests_total{'))) {
      const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      const key = ['reporter', 'request_protocol', 'response_code', 'grpc_response_status', 'destination_service', 'destination_workload', 'source_workload', 'connection_security_policy'].map((k) => labels[k]).join(' ');
      counts.set(key, (counts.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
    }
    return counts;
  };

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: NS, labels: { app: 'client' }, serviceAccount: 'client' },
            { name: 'web-1', namespace: NS, labels: { app: 'web-local' }, serviceAccount: 'web' },
          ],
        },
        { name: 'n2', pods: [{ name: 'web-2', namespace: NS, labels: { app: 'web-remote' }, serviceAccount: 'web' }] },
      ],
      namespaces: { [NS]: { 'nodemesh.io/mode': 'enabled' } },
    });
    await Promise.all(
      ['web-1', 'web-2'].flatMap((pod) => [
        tb.startFixture(pod, 'http-backend.mjs', ['--port', String(HTTP_PORT), '--name', pod]),
        // Some calls fail with a trailers-only NOT_FOUND, which the source does not retry.
        tb.startFixture(pod, 'grpc-backend.mjs', ['--port', String(GRPC_PORT), '--name', pod, '--fail-rate', '0.3', '--fail-code', 'NOT_FOUND']),
      ]),
    );
    const service = (name: string, clusterIP: string, app: string, port: number, targetPort: number, appProtocol?: string): Doc =>
      serviceDoc({ name, namespace: NS, clusterIP, selector: { app }, ports: [{ name: 'main', port, targetPort, ...(appProtocol ? { appProtocol } : {}) }] });
    const configFile = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(configFile, [
      ...testbedDocs(tb),
      service('http-local', VIP.httpLocal, 'web-local', 80, HTTP_PORT),
      service('http-remote', VIP.httpRemote, 'web-remote', 80, HTTP_PORT),
      service('grpc-local', VIP.grpcLocal, 'web-local', GRPC_PORT, GRPC_PORT, 'grpc'),
      service('grpc-remote', VIP.grpcRemote, 'web-remote', GRPC_PORT, GRPC_PORT, 'grpc'),
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'deny-denied', namespace: NS },
        spec: { selector: { matchLabels: { app: 'web-remote' } }, action: 'DENY', rules: [{ to: [{ operation: { paths: ['/denied*'] } }] }] },
      },
    ]);
    for (const node of ['n1', 'n2']) {
      const a = new AgentProcess(tb, node);
      agents.set(node, a);
      await a.start(configFile);
    }
  });

  after(async () => {
    try {
      for (const a of agents.values()) await a.remove();
    } finally {
      await tb?.destroy();
    }
  });

  it('sends HTTP/1.1, h2c and gRPC requests on the same node and across nodes; each is recorded once at each end with the same status', async () => {
    const sent = { http: 0, grpc: 0 };
    for (const t of TARGETS) {
      const h1 = await load(`http://${t.http}/ok`);
      const h1NotFound = await load(`http://${t.http}/status/404`, ['--requests', '5']);
      const h2 = await load(`http://${t.http}/ok`, ['--http2']);
      const grpc = await fixtureJson<GrpcResult>('grpc-client.mjs', ['--target', `${t.grpc}:${GRPC_PORT}`, '--calls', String(N), '--concurrency', '2', '--deadline-ms', '3000']);
      assert.deepEqual([h1.statuses, h1NotFound.statuses, h2.statuses], [{ 200: N }, { 404: 5 }, { 200: N }], `${t.name}: ${JSON.stringify({ h1, h1NotFound, h2 })}`);
      assert.equal((grpc.codes.OK ?? 0) + (grpc.codes.NOT_FOUND ?? 0), N, `${t.name}: ${JSON.stringify(grpc)}`);
      sent.http += 2 * N + 5;
      sent.grpc += N;
    }
    const denied = await load(`http://${VIP.httpRemote}/denied`, ['--requests', '5', '--http2']);
    assert.deepEqual(denied.statuses, { 403: 5 }, 'the destination denied these itself');
    sent.http += 5;

    const total = sent.http + sent.grpc;
    // The log is written asynchronously, and the last answers' records may trail the clients.
    const [source, destination] = await agents.get('n1')!.until('access log lines of both reporters', async () => {
      const s = accessLog('n1', 'source');
      const d = [...accessLog('n1', 'destination'), ...accessLog('n2', 'destination')];
      return s.length >= total && d.length >= total ? [s, d] : undefined;
    });
    assert.equal(source.length, total, 'the source reported every request once');
    assert.equal(destination.length, total, 'the destination reported every request once');

    // One to one by request id: same protocol, version, method, path, status and gRPC status.
    const key = (r: AccessLine) => [r.protocol, r.httpVersion, r.method, r.path, r.status, r.grpcStatus].join(' ');
    const byId = new Map(destination.map((r) => [r.requestId, r]));
    assert.equal(byId.size, destination.length, 'request ids are unique');
    for (const s of source) {
      const d = byId.get(s.requestId);
      assert.ok(d, `no destination record for ${s.requestId} (${key(s)})`);
      assert.equal(key(d), key(s), s.requestId ?? '');
      const t = TARGETS.find((x) => `${x.pod}` === `${d.dst.namespace}/${d.dst.pod}`);
      assert.ok(t, `destination pod ${d.dst.pod}`);
      assert.equal(s.endpoint?.addr, d.endpoint?.addr, 'the endpoint the source chose is the one that reported');
      assert.equal(d.endpoint?.node, t.node);
      assert.equal(d.security, t.security);
      assert.equal(d.src.identity, CLIENT_ID);
      assert.equal(d.src.pod, 'client');
      assert.equal(d.dst.service, s.dst.service);
      assert.equal(d.responseFlags, '-');
      assert.equal(d.authorization?.decision, d.path === '/denied' ? 'deny' : 'allow', key(d));
    }

    // The protocols were what the clients spoke, and gRPC statuses came through at both ends.
    const count = (rs: AccessLine[], f: (r: AccessLine) => boolean) => rs.filter(f).length;
    for (const rs of [source, destination]) {
      assert.equal(count(rs, (r) => r.protocol === 'http' && r.httpVersion === '1.1'), 2 * (N + 5));
      assert.equal(count(rs, (r) => r.protocol === 'http' && r.httpVersion === '2'), 2 * N + 5);
      assert.equal(count(rs, (r) => r.protocol === 'grpc'), 2 * N);
      assert.equal(count(rs, (r) => r.protocol === 'grpc' && r.grpcStatus !== 0 && r.grpcStatus !== 5), 0);
      // 30% of 40 calls fail: both the trailers (OK) and the trailers-only (NOT_FOUND) forms were seen.
      assert.ok(count(rs, (r) => r.grpcStatus === 0) > 0 && count(rs, (r) => r.grpcStatus === 5) > 0);
    }
    const deniedRecord = destination.find((r) => r.path === '/denied');
    assert.equal(deniedRecord?.authorization?.policy, 'shop/deny-denied');
    assert.equal(deniedRecord?.status, 403);

    // istio_requests_total: per protocol, code, gRPC status, service and workloads, the
    // destination reporters (both nodes) count what the source counted.
    const [n1, n2] = await Promise.all([requestCounts('n1'), requestCounts('n2')]);
    const byReporter = (reporter: string) => {
      const out: Record<string, number> = {};
      for (const m of [n1, n2]) for (const [k, v] of m) if (k.startsWith(`${reporter} `)) out[k.slice(reporter.length + 1)] = (out[k.slice(reporter.length + 1)] ?? 0) + v;
      return out;
    };
    const fromSource = byReporter('source');
    assert.equal(Object.values(fromSource).reduce((a, b) => a + b, 0), total);
    // The connection_security_policy of the source is what it dialled with; compare the rest.
    const withoutSecurity = (o: Record<string, number>) => {
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(o)) out[k.slice(0, k.lastIndexOf(' '))] = (out[k.slice(0, k.lastIndexOf(' '))] ?? 0) + v;
      return out;
    };
    assert.deepEqual(withoutSecurity(byReporter('destination')), withoutSecurity(fromSource));
  });
});
