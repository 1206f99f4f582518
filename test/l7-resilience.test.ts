// L7 resilience end to end on the netns testbed: what a client pod observes when the node
// proxy retries (with a budget), ejects outliers, breaks circuits, injects faults, limits
// rates and times requests out — configured with HTTPRoute, DestinationRule and the
// nodemesh.io policies, against real backends behind real agents (eBPF capture, HBONE).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { fixturePath, Testbed } from '../scripts/testbed/testbed.js';
import type { AgentStatus } from '../agent/src/app.js';
import { AgentProcess } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;
const READY_TIMEOUT_MS = 10_000;
const NS = 'shop';

interface LoadResult {
  requests: number;
  completed: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  errors: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number } | null;
  headers: Record<string, string> | null;
  connections: number;
  seconds: number;
}

interface GrpcResult {
  ok: number;
  calls: number;
  byPod: Record<string, number>;
  codes: Record<string, number>;
  errors: string[];
  ms: number;
}

interface LogLine {
  name: string;
  method: string;
  path: string;
  at: number;
}

// Each Service gets its own VIP; HTTP Services listen on 80, gRPC ones on 9090.
const VIP = {
  retry50: '10.96.1.1',
  budget: '10.96.1.2',
  reset: '10.96.1.3',
  outlier: '10.96.1.4',
  cbH1: '10.96.1.5',
  cbH2: '10.96.1.6',
  faulty: '10.96.1.7',
  limited: '10.96.1.8',
  deadline: '10.96.1.9',
  tpair: '10.96.1.10',
  grpcFault: '10.96.1.11',
  grpcLimited: '10.96.1.12',
  grpcSlow: '10.96.1.13',
  grpcDown: '10.96.1.14',
  l4Hash: '10.96.1.15',
  l4Spread: '10.96.1.16',
  l4Outlier: '10.96.1.17',
} as const;

// Pod selectors: p1 is on the client's node (in-process inbound), p2 and p3 on the other
// (HBONE), so both upstream paths are exercised.
const ALL = { app: 'pool' };
const PAIR = { pair: 'yes' };
const SOLO = { solo: 'yes' };
const REMOTE = { remote: 'yes' };

const svc = (name: string, ip: string, selector: Record<string, string>, targetPort: number, appProtocol?: string): Doc => {
  const doc = serviceDoc({ name, namespace: NS, clusterIP: ip, selector, ports: [{ name: 'main', port: appProtocol ? 9090 : 80, targetPort }] });
  if (appProtocol) doc.spec.ports[0].appProtocol = appProtocol;
  return doc;
};
const serviceRef = (name: string, port = 80) => ({ group: '', kind: 'Service', name, port });
const httpRoute = (name: string, service: string, rules: Doc[], port = 80): Doc => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name, namespace: NS },
  spec: { parentRefs: [serviceRef(service, port)], rules: rules.map((r) => ({ backendRefs: [{ name: service, port }], ...r })) },
});
const destinationRule = (name: string, trafficPolicy: Doc): Doc => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name, namespace: NS },
  spec: { host: name, trafficPolicy },
});
const targetService = (name: string) => ({ group: '', kind: 'Service', name });
const targetRoute = (name: string) => ({ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', name });
const policy = (kind: 'FaultInjection' | 'LocalRateLimit', name: string, spec: Doc): Doc => ({
  apiVersion: 'nodemesh.io/v1alpha1',
  kind,
  metadata: { name, namespace: NS },
  spec,
});
const prefix = (value: string) => ({ path: { type: 'PathPrefix', value } });

const CONFIG: Doc[] = [
  svc('retry50', VIP.retry50, PAIR, 8101),
  httpRoute('retry50', 'retry50', [{ retry: { codes: [503], attempts: 9, backoff: '5ms' } }]),
  svc('budget', VIP.budget, PAIR, 8102),
  httpRoute('budget', 'budget', [{ retry: { codes: [500], attempts: 5, backoff: '5ms' } }]),
  svc('reset', VIP.reset, REMOTE, 8103),
  // /asked carries a retry policy (so resets of any method are retried); the rest has none.
  httpRoute('reset', 'reset', [{ matches: [prefix('/asked')], retry: { attempts: 2 } }, {}]),
  svc('outlier', VIP.outlier, ALL, 8104),
  // Round robin, so that the bad pod's share (and the time its next three failures take once
  // it is back) does not depend on the latency-based default balancer.
  destinationRule('outlier', {
    loadBalancer: { simple: 'ROUND_ROBIN' },
    outlierDetection: { consecutive5xxErrors: 3, interval: '500ms', baseEjectionTime: '2s', maxEjectionPercent: 50 },
  }),
  svc('cb-h1', VIP.cbH1, SOLO, 8105),
  destinationRule('cb-h1', { connectionPool: { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } } }),
  svc('cb-h2', VIP.cbH2, SOLO, 8105),
  destinationRule('cb-h2', { connectionPool: { http: { http2MaxRequests: 2 } } }),
  svc('faulty', VIP.faulty, SOLO, 8080),
  httpRoute('faulty-slow', 'faulty', [{ matches: [prefix('/slow')] }]),
  httpRoute('faulty-rest', 'faulty', [{}]),
  policy('FaultInjection', 'faulty-abort', { targetRefs: [targetService('faulty')], abort: { httpStatus: 500, percentage: 25 } }),
  // Attached to the /slow route: wins over the Service's abort for those requests.
  policy('FaultInjection', 'faulty-delay', { targetRefs: [targetRoute('faulty-slow')], delay: { fixedDelay: '300ms', percentage: 30 } }),
  svc('limited', VIP.limited, SOLO, 8080),
  policy('LocalRateLimit', 'limited', { targetRefs: [targetService('limited')], tokenBucket: { maxTokens: 5, tokensPerFill: 2, fillInterval: '500ms' } }),
  svc('deadline', VIP.deadline, SOLO, 8080),
  httpRoute('deadline', 'deadline', [{ timeouts: { request: '300ms' } }]),
  svc('tpair', VIP.tpair, PAIR, 8108),
  destinationRule('tpair', { loadBalancer: { simple: 'ROUND_ROBIN' } }),
  httpRoute('tpair', 'tpair', [{ timeouts: { request: '2s', backendRequest: '250ms' }, retry: { attempts: 2 } }]),
  svc('grpc-fault', VIP.grpcFault, SOLO, 9100, 'grpc'),
  policy('FaultInjection', 'grpc-fault', { targetRefs: [targetService('grpc-fault')], abort: { grpcStatus: 'ABORTED' } }),
  svc('grpc-limited', VIP.grpcLimited, SOLO, 9100, 'grpc'),
  policy('LocalRateLimit', 'grpc-limited', { targetRefs: [targetService('grpc-limited')], tokenBucket: { maxTokens: 3, fillInterval: '1h' } }),
  svc('grpc-slow', VIP.grpcSlow, SOLO, 9101, 'grpc'),
  httpRoute('grpc-slow', 'grpc-slow', [{ timeouts: { request: '300ms' } }], 9090),
  // Nothing listens on 9199 in either pod: every endpoint refuses the connection.
  svc('grpc-down', VIP.grpcDown, PAIR, 9199, 'grpc'),
  // L4 (appProtocol tcp): connections balance through the same clusters as requests.
  svc('l4-hash', VIP.l4Hash, ALL, 8110, 'tcp'),
  destinationRule('l4-hash', { loadBalancer: { consistentHash: { useSourceIp: true } } }),
  svc('l4-spread', VIP.l4Spread, ALL, 8110, 'tcp'),
  destinationRule('l4-spread', { loadBalancer: { simple: 'ROUND_ROBIN' } }),
  // Only p1 listens on 8111: connections to p2 fail until outlier detection ejects it.
  svc('l4-outlier', VIP.l4Outlier, PAIR, 8111, 'tcp'),
  destinationRule('l4-outlier', {
    loadBalancer: { simple: 'ROUND_ROBIN' },
    outlierDetection: { consecutive5xxErrors: 2, interval: '500ms', baseEjectionTime: '60s', maxEjectionPercent: 50 },
  }),
];

describe('L7 resilience: retries, outlier detection, circuit breaking, faults, rate limits, timeouts', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  const agents: AgentProcess[] = [];
  const logFile = (name: string) => path.join(tb.scratchDir, `${name}.jsonl`);
  const logLines = (name: string): LogLine[] =>
    existsSync(logFile(name))
      ? readFileSync(logFile(name), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine)
      : [];

  /** Starts a fixture server in a pod; resolves once it printed "ready". */
  const startFixture = async (pod: string, script: string, args: string[]): Promise<ChildProcess> => {
    const child = tb.spawn({ pod }, [process.execPath, fixturePath(script), '--name', pod, ...args]);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`${script} in ${pod} not ready in ${READY_TIMEOUT_MS} ms: ${err}`)), READY_TIMEOUT_MS);
      child.stderr?.setEncoding('utf8').on('data', (c: string) => (err += c));
      child.stdout?.setEncoding('utf8').on('data', (c: string) => {
        out += c;
        if (/^ready$/m.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${script} in ${pod} exited (${code}) before ready: ${err}`));
      });
    });
    return child;
  };
  const backend = (pod: string, port: number, log: string | undefined, ...extra: string[]) =>
    startFixture(pod, 'http-backend.mjs', ['--port', String(port), ...(log ? ['--log', logFile(log)] : []), ...extra]);

  /** http-load from the client pod. */
  const load = async (url: string, args: string[] = [], timeoutMs = 30_000): Promise<LoadResult> => {
    const r = await tb.exec({ pod: 'client' }, [process.execPath, fixturePath('http-load.mjs'), '--url', url, '--max-ms', String(timeoutMs - 2000), ...args], { timeoutMs });
    assert.equal(r.code, 0, `http-load ${url}: ${r.stderr}`);
    return JSON.parse(r.stdout) as LoadResult;
  };
  const grpc = async (vip: string, args: string[] = []): Promise<GrpcResult> => {
    const r = await tb.exec({ pod: 'client' }, [process.execPath, fixturePath('grpc-client.mjs'), '--target', `${vip}:9090`, ...args], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `grpc-client ${vip}: ${r.stderr}`);
    return JSON.parse(r.stdout) as GrpcResult;
  };
  /** curl from the client pod: status, time to the whole answer, and the x-envoy-* headers. */
  const curl = async (url: string, extra: string[] = []) => {
    const format = '%{http_code} %{time_total} %header{x-envoy-ratelimited} %header{x-envoy-overloaded}';
    const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '10', '-o', '/dev/null', '-w', format, ...extra, url]);
    const [code, seconds, ratelimited, overloaded] = r.stdout.split(' ');
    return { status: Number(code), ms: Number(seconds) * 1000, ratelimited, overloaded, stderr: r.stderr };
  };

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: NS, labels: { app: 'client' } },
            { name: 'p1', namespace: NS, labels: { ...ALL, ...PAIR, ...SOLO } },
          ],
        },
        {
          name: 'n2',
          pods: [
            { name: 'p2', namespace: NS, labels: { ...ALL, ...PAIR, ...REMOTE } },
            { name: 'p3', namespace: NS, labels: { ...ALL } },
          ],
        },
      ],
      namespaces: { [NS]: { 'nodemesh.io/mode': 'enabled' } },
    });
    await Promise.all([
      backend('p1', 8101, 'retry50-p1', '--fail-rate', '0.5'),
      backend('p2', 8101, 'retry50-p2', '--fail-rate', '0.5'),
      backend('p1', 8102, 'budget-p1', '--fail-rate', '1', '--fail-status', '500'),
      backend('p2', 8102, 'budget-p2', '--fail-rate', '1', '--fail-status', '500'),
      startFixture('p2', 'reset-backend.mjs', ['--port', '8103', '--log', logFile('reset')]),
      backend('p1', 8104, 'outlier-p1'),
      backend('p2', 8104, 'outlier-p2'),
      backend('p3', 8104, 'outlier-p3', '--fail-rate', '1'),
      backend('p1', 8105, undefined, '--delay-ms', '1000'),
      ...['p1', 'p2', 'p3'].map((pod) => backend(pod, 8110, undefined)),
      backend('p1', 8111, undefined),
      backend('p1', 8080, 'healthy'),
      backend('p1', 8108, 'tpair-p1'),
      backend('p2', 8108, 'tpair-p2', '--delay-ms', '2000'),
      startFixture('p1', 'grpc-backend.mjs', ['--port', '9100', '--log', logFile('grpc')]),
      startFixture('p1', 'grpc-backend.mjs', ['--port', '9101', '--delay-ms', '2000']),
    ]);
    const configFile = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(configFile, [...testbedDocs(tb), ...CONFIG]);
    for (const node of ['n1', 'n2']) {
      const agent = new AgentProcess(tb, node, ['--access-log', 'off']);
      agents.push(agent);
      await agent.start(configFile);
    }
    const status = await (agents[0] as AgentProcess).json<AgentStatus>(['status']);
    assert.deepEqual(status.config.rejections, [], 'every resource of the test configuration is valid');
  });

  after(async () => {
    try {
      for (const agent of agents) await agent.remove();
    } finally {
      await tb?.destroy();
    }
  });

  /** Which pod answered each of `n` connections (one curl each), or the curl error. */
  const l4 = async (vip: string, n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '3', `http://${vip}:9090/`]);
      out.push(r.code === 0 ? (JSON.parse(r.stdout) as { pod: string }).pod : `curl ${r.code}`);
    }
    return out;
  };

  it('L4 connections follow the DestinationRule load balancer: consistent hash on the source IP, or round robin', async () => {
    const hashed = await l4(VIP.l4Hash, 12);
    assert.equal(new Set(hashed).size, 1, `one pod for one source IP: ${hashed.join(' ')}`);
    const spread = await l4(VIP.l4Spread, 12);
    assert.deepEqual([...new Set(spread)].sort(), ['p1', 'p2', 'p3'], spread.join(' '));
  });

  it('L4 outlier detection: an endpoint whose connections fail is ejected, and new connections go to the others', async () => {
    const got = await l4(VIP.l4Outlier, 20);
    const failed = got.filter((g) => g !== 'p1').length;
    console.log(`l4-outlier: ${got.join(' ')}`);
    // Round robin over two endpoints: without ejection every second connection would fail.
    assert.ok(failed <= 3, `${failed} of 20 connections failed: ${got.join(' ')}`);
    const metrics = await tb.exec({ node: 'n1' }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
    assert.match(metrics.stdout, /^nodemesh_outlier_ejected_endpoints\{destination_service="[^"/]+\/l4-outlier:9090"\} 1$/m, metrics.stdout.slice(0, 2000));
  });

  it('retries 503s of a backend failing half the time: over 99% of requests succeed', async () => {
    const r = await load(`http://${VIP.retry50}/retry`, ['--requests', '300', '--concurrency', '2']);
    const ok = r.statuses['200'] ?? 0;
    const attempts = logLines('retry50-p1').length + logLines('retry50-p2').length;
    console.log(`retry50: ${JSON.stringify(r.statuses)}, ${attempts} attempts for 300 requests, ${r.seconds} s`);
    assert.ok(ok / 300 > 0.99, `success ${ok}/300: ${JSON.stringify(r)}`);
    // Each attempt fails with probability 1/2: about two attempts per request.
    assert.ok(attempts / 300 > 1.6 && attempts / 300 < 2.5, `attempts per request ${attempts / 300}`);
    assert.deepEqual(Object.keys(r.byPod).sort(), ['p1', 'p2']);
  });

  it('a retry budget caps the extra load on a backend that always fails', async () => {
    const requests = 400;
    const r = await load(`http://${VIP.budget}/budget`, ['--requests', String(requests), '--concurrency', '50']);
    const attempts = logLines('budget-p1').length + logLines('budget-p2').length;
    const ratio = attempts / requests;
    console.log(`budget: ${JSON.stringify(r.statuses)}, ${attempts} attempts for ${requests} requests (ratio ${ratio.toFixed(2)}), ${r.seconds} s`);
    // A retry the budget refuses returns the app's own answer (Envoy's retry overflow), never a
    // proxy-made 503.
    assert.deepEqual(r.statuses, { 500: requests }, JSON.stringify(r));
    assert.equal((r.byPod.p1 ?? 0) + (r.byPod.p2 ?? 0), requests, 'every body is the backend\'s');
    // Without the budget each request would make 1 + 5 attempts.
    assert.ok(ratio > 1.02 && ratio < 1.5, `attempts per request ${ratio}`);
  });

  it('does not retry a POST whose body reached the app after a reset, unless the route asked for retries', async () => {
    const count = (p: string) => logLines('reset').filter((l) => l.path === p).length;
    const post = await curl(`http://${VIP.reset}/post`, ['--data-binary', 'x'.repeat(100)]);
    assert.equal(post.status, 503, post.stderr);
    assert.equal(count('/post'), 1, 'the POST reached the app once and was not retried');
    // An idempotent request is retried by default (Envoy/Istio: two retries).
    const get = await curl(`http://${VIP.reset}/get`);
    assert.equal(get.status, 503);
    assert.equal(count('/get'), 3);
    // The route's retry policy covers resets of any method.
    const asked = await curl(`http://${VIP.reset}/asked`, ['--data-binary', 'x'.repeat(100)]);
    assert.equal(asked.status, 503);
    assert.equal(count('/asked'), 3);
  });

  it('ejects an endpoint that keeps failing and brings it back after baseEjectionTime', async () => {
    const started = Date.now();
    const r = await load(`http://${VIP.outlier}/outlier`, ['--requests', '300', '--rps', '50', '--concurrency', '4'], 30_000);
    const bad = logLines('outlier-p3').filter((l) => l.at >= started).map((l) => l.at);
    const good = logLines('outlier-p1').length + logLines('outlier-p2').length;
    // Bursts of requests to the bad pod, split where it received nothing for over 1 s.
    const bursts: number[][] = [];
    for (const at of bad) {
      const last = bursts.at(-1);
      if (last && at - (last.at(-1) as number) < 1000) last.push(at);
      else bursts.push([at]);
    }
    const gaps = bursts.slice(1).map((b, i) => (b[0] as number) - ((bursts[i] as number[]).at(-1) as number));
    console.log(`outlier: ${JSON.stringify(r.statuses)} over ${r.seconds} s; bad pod got ${bad.length} requests in bursts of ${bursts.map((b) => b.length).join(', ')}, silent ${gaps.join(', ')} ms between; good pods ${good}`);
    // Without ejection the bad pod would take about a third of 300 requests.
    assert.ok(bad.length <= 12, `bad pod got ${bad.length} requests`);
    assert.equal(r.statuses['503'], bad.length, 'each request to the bad pod is a 503 to the client, none other');
    assert.ok(bursts.length >= 2, 'the bad pod received traffic again after its ejection');
    // consecutive5xxErrors 3: a burst is the three failures that eject it (plus any in flight).
    assert.ok((bursts[0] as number[]).length >= 3 && (bursts[0] as number[]).length <= 5, `first burst ${bursts[0]?.length}`);
    // Restored by the first sweep (interval 500ms) after baseEjectionTime 2s.
    const restoredAfter = gaps[0] as number;
    assert.ok(restoredAfter >= 1900 && restoredAfter <= 2500 + 400, `back after ${restoredAfter} ms`);
    // Ejected again at once; the second ejection in a row lasts twice as long (4s), past the run.
    assert.equal(bursts.length, 2, `bursts ${bursts.map((b) => b.length).join(', ')}`);
    assert.ok((bursts[1] as number[]).length >= 3 && (bursts[1] as number[]).length <= 5, `second burst ${bursts[1]?.length}`);
    // The client's node says so in its metrics while the ejection lasts.
    const metrics = await tb.exec({ node: 'n1' }, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
    assert.match(metrics.stdout, /^nodemesh_outlier_ejected_endpoints\{destination_service="[^"]+:\d+"\} 1$/m, metrics.stdout.slice(0, 2000));
  });

  it('HTTP/1.1 circuit breaker: past maxConnections and http1MaxPendingRequests, 503 at once with x-envoy-overloaded', async () => {
    const r = await load(`http://${VIP.cbH1}/cb`, ['--requests', '10', '--concurrency', '10']);
    console.log(`cb-h1: ${JSON.stringify(r.statuses)} latency ${JSON.stringify(r.latencyMs)}`);
    // One on the connection, one waiting for it; the rest overflow.
    assert.deepEqual(r.statuses, { 200: 2, 503: 8 }, JSON.stringify(r));
    // The overflowed requests did not wait for the 1 s backend.
    assert.ok((r.latencyMs?.p50 ?? Infinity) < 300, `p50 ${r.latencyMs?.p50} ms`);
    assert.ok((r.latencyMs?.max ?? 0) >= 1900, 'the pending request waited for the connection');
    assert.equal(r.headers?.['x-envoy-overloaded'], 'true', JSON.stringify(r.headers));
  });

  it('HTTP/2 circuit breaker: past http2MaxRequests, 503 at once with x-envoy-overloaded', async () => {
    const r = await load(`http://${VIP.cbH2}/cb`, ['--requests', '10', '--concurrency', '10', '--http2']);
    console.log(`cb-h2: ${JSON.stringify(r.statuses)} latency ${JSON.stringify(r.latencyMs)}`);
    assert.deepEqual(r.statuses, { 200: 2, 503: 8 }, JSON.stringify(r));
    assert.equal(r.connections, 1, 'all streams on one HTTP/2 connection');
    assert.ok((r.latencyMs?.p50 ?? Infinity) < 300, `p50 ${r.latencyMs?.p50} ms`);
    assert.ok((r.latencyMs?.max ?? 0) >= 950 && (r.latencyMs?.max ?? 0) < 1900, `max ${r.latencyMs?.max} ms`);
    assert.equal(r.headers?.['x-envoy-overloaded'], 'true', JSON.stringify(r.headers));
  });

  it('fault injection: an abort for a share of requests, within statistical bounds; aborted requests never reach the app', async () => {
    const n = 1000;
    const r = await load(`http://${VIP.faulty}/abort-probe`, ['--requests', String(n), '--concurrency', '10']);
    const aborted = r.statuses['500'] ?? 0;
    const reached = logLines('healthy').filter((l) => l.path === '/abort-probe').length;
    console.log(`fault abort: ${JSON.stringify(r.statuses)} (${((100 * aborted) / n).toFixed(1)}% aborted, 25% asked), ${r.seconds} s`);
    // 25% of 1000: mean 250, sd 13.7; ±5 sd.
    assert.ok(aborted >= 182 && aborted <= 318, `aborted ${aborted}/${n}`);
    assert.equal((r.statuses['200'] ?? 0) + aborted, n, JSON.stringify(r.statuses));
    assert.equal(reached, r.statuses['200'], 'only the requests answered 200 reached the backend');
  });

  it("fault injection: a fixed delay for a share of requests, set on a route, which wins over the Service's abort", async () => {
    const r = await load(`http://${VIP.faulty}/slow/latency`, ['--requests', '100', '--concurrency', '10']);
    console.log(`fault delay: ${JSON.stringify(r.statuses)} latency ${JSON.stringify(r.latencyMs)}`);
    assert.deepEqual(r.statuses, { 200: 100 }, 'the route-level fault (delay only) replaced the Service-level abort');
    assert.ok((r.latencyMs?.p50 ?? Infinity) < 150, `p50 ${r.latencyMs?.p50} ms`);
    assert.ok((r.latencyMs?.p99 ?? 0) >= 300 && (r.latencyMs?.max ?? Infinity) < 800, JSON.stringify(r.latencyMs));
    // The share: a client that gives up after 150 ms sees exactly the delayed requests fail.
    const n = 200;
    const s = await load(`http://${VIP.faulty}/slow/share`, ['--requests', String(n), '--concurrency', '10', '--timeout-ms', '150']);
    const delayed = s.errors.ETIMEDOUT ?? 0;
    console.log(`fault delay share: ${delayed}/${n} (${((100 * delayed) / n).toFixed(1)}%, 30% asked) ${JSON.stringify(s.statuses)} ${JSON.stringify(s.errors)}`);
    // 30% of 200: mean 60, sd 6.5; ±5 sd.
    assert.ok(delayed >= 28 && delayed <= 92, `delayed ${delayed}/${n}`);
    assert.equal((s.statuses['200'] ?? 0) + delayed, n, JSON.stringify(s));
  });

  it('fault injection: a gRPC abort reaches the gRPC client as its status code', async () => {
    const r = await grpc(VIP.grpcFault, ['--calls', '5']);
    console.log(`grpc fault: ${JSON.stringify(r.codes)} ${r.errors[0]}`);
    assert.deepEqual(r.codes, { ABORTED: 5 });
    assert.equal(r.errors[0], 'ABORTED: fault filter abort by FaultInjection shop/grpc-fault');
  });

  it('local rate limit: maxTokens plus the fills pass, the rest get 429', async () => {
    const n = 80;
    const r = await load(`http://${VIP.limited}/limited`, ['--requests', String(n), '--rps', '40', '--concurrency', '4']);
    const ok = r.statuses['200'] ?? 0;
    // The bucket starts full at the first request and gains 2 tokens every 500 ms.
    const expected = 5 + 2 * Math.floor(r.seconds / 0.5);
    console.log(`rate limit: ${JSON.stringify(r.statuses)} over ${r.seconds} s, expected ${expected} passed`);
    assert.ok(Math.abs(ok - expected) <= 3, `passed ${ok}, expected ${expected} ± 3`);
    assert.equal(r.statuses['429'], n - ok, JSON.stringify(r.statuses));
    // A refill may have come since the run: the next requests drain it, then one is limited.
    let limited = await curl(`http://${VIP.limited}/limited`);
    for (let i = 0; i < 6 && limited.status !== 429; i += 1) limited = await curl(`http://${VIP.limited}/limited`);
    assert.equal(limited.status, 429);
    assert.equal(limited.ratelimited, 'true', 'x-envoy-ratelimited');
  });

  it('local rate limit: gRPC calls past the bucket get RESOURCE_EXHAUSTED', async () => {
    const r = await grpc(VIP.grpcLimited, ['--calls', '10']);
    console.log(`grpc rate limit: ${JSON.stringify(r.codes)}`);
    assert.deepEqual(r.codes, { OK: 3, RESOURCE_EXHAUSTED: 7 });
    assert.match(r.errors[0] ?? '', /local_rate_limited/);
  });

  it('timeouts.request shorter than the backend answers 504 in about that time', async () => {
    const r = await curl(`http://${VIP.deadline}/delay/1500`);
    console.log(`request timeout: ${r.status} after ${r.ms.toFixed(0)} ms`);
    assert.equal(r.status, 504, r.stderr);
    assert.ok(r.ms >= 280 && r.ms < 800, `answered after ${r.ms} ms`);
  });

  it('timeouts.backendRequest with retries: a slow pod is given up and another pod answers', async () => {
    const slowBefore = logLines('tpair-p2').length;
    const r = await load(`http://${VIP.tpair}/tpair`, ['--requests', '20', '--concurrency', '1']);
    const slowTried = logLines('tpair-p2').length - slowBefore;
    console.log(`backendRequest: ${JSON.stringify(r.statuses)} byPod ${JSON.stringify(r.byPod)} latency ${JSON.stringify(r.latencyMs)}; slow pod tried ${slowTried} times`);
    assert.deepEqual(r.statuses, { 200: 20 });
    assert.deepEqual(r.byPod, { p1: 20 });
    assert.ok(slowTried >= 5, `the slow pod was tried ${slowTried} times (round robin)`);
    // A request that tried the slow pod first took one per-try timeout (250 ms) more.
    assert.ok((r.latencyMs?.max ?? Infinity) < 800, `max ${r.latencyMs?.max} ms`);
    assert.ok((r.latencyMs?.max ?? 0) >= 240, `max ${r.latencyMs?.max} ms`);
  });

  it('gRPC: a proxy timeout is DEADLINE_EXCEEDED, unreachable endpoints are UNAVAILABLE', async () => {
    const slow = await grpc(VIP.grpcSlow, ['--calls', '2', '--deadline-ms', '5000']);
    console.log(`grpc timeout: ${JSON.stringify(slow.codes)} in ${slow.ms} ms: ${slow.errors[0]}`);
    assert.deepEqual(slow.codes, { DEADLINE_EXCEEDED: 2 });
    // The proxy's own status (its message), not the client's 5 s deadline.
    assert.match(slow.errors[0] ?? '', /upstream request timeout/);
    assert.ok(slow.ms < 2000, `${slow.ms} ms for two calls`);

    const down = await grpc(VIP.grpcDown, ['--calls', '3', '--deadline-ms', '5000']);
    console.log(`grpc unreachable: ${JSON.stringify(down.codes)} in ${down.ms} ms: ${down.errors[0]}`);
    assert.deepEqual(down.codes, { UNAVAILABLE: 3 });
    assert.ok(down.ms < 3000, `${down.ms} ms for three calls`);
  });
});
