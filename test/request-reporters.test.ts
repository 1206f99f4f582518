// Both reporters end to end on the netns testbed: a client pod sends HTTP/1.1, h2c and gRPC
// requests to a backend on its own node and to one on the other node (HBONE); the source
// node's L7 proxy and the destination's inbound filters each record every request, and the
// two sets of records (the agents' admin /requests) match one to one by request id.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import { AgentProcess, FIXTURES } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc } from '../scripts/testbed/mesh-config.js';
import type { RequestView } from '../agent/src/telemetry/recent-requests.js';

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
  const requests = async (node: string, reporter: 'source' | 'destination'): Promise<RequestView[]> => {
    const r = await tb.exec({ node }, ['curl', '-sS', '--max-time', '3', `http://127.0.0.1:15000/requests?reporter=${reporter}`]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as RequestView[];
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

    const source = await requests('n1', 'source');
    assert.equal(source.length, sent.http + sent.grpc, 'the source reported every request once');
    // The last answers' records may trail the clients' exit by a moment.
    const destination = await agents.get('n1')!.until('destination records on both nodes', async () => {
      const all = [...(await requests('n1', 'destination')), ...(await requests('n2', 'destination'))];
      return all.length >= source.length ? all : undefined;
    });
    assert.equal(destination.length, source.length, 'the destination reported every request once');

    // One to one by request id: same protocol, version, method, path, status and gRPC status.
    const key = (r: RequestView) => [r.protocol, r.httpVersion, r.method, r.path, r.status, r.grpcStatus].join(' ');
    const byId = new Map(destination.map((r) => [r.requestId, r]));
    assert.equal(byId.size, destination.length, 'request ids are unique');
    for (const s of source) {
      const d = byId.get(s.requestId);
      assert.ok(d, `no destination record for ${s.requestId} (${key(s)})`);
      assert.equal(key(d), key(s), s.requestId ?? '');
      const t = TARGETS.find((x) => x.pod === d.destination.pod);
      assert.ok(t, `destination pod ${d.destination.pod}`);
      assert.equal(s.destination.pod, d.destination.pod, 'the endpoint the source chose is the one that reported');
      assert.equal(d.security, t.security);
      assert.equal(d.source.identity, CLIENT_ID);
      assert.equal(d.source.pod, 'shop/client');
      assert.equal(d.destination.service?.split(':')[0], s.destination.service?.split(':')[0]);
      assert.equal(d.responseFlags, '-');
      assert.equal(d.authorization?.allowed, d.path !== '/denied', key(d));
    }

    // The protocols were what the clients spoke, and gRPC statuses came through at both ends.
    const count = (rs: RequestView[], f: (r: RequestView) => boolean) => rs.filter(f).length;
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
  });
});
