// L7 routing end to end on the netns testbed: real clients in a pod (curl, h2load, gRPC, raw
// sockets) call Service VIPs; the node proxy detects HTTP/1.1, h2c and gRPC, applies the
// Gateway API routes, and balances each request over backends on its own node and, through
// HBONE mTLS, on the other node. Assertions are on what the client and the backends observe.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import type { AgentStatus } from '../agent/src/app.js';
import { AgentProcess, FIXTURES } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc, type ServiceSpec } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;
const NS = 'shop';
const BACKENDS = ['web-1', 'web-2', 'web-3'] as const;
const HTTP_PORT = 8080;
const GRPC_PORT = 9090;
const BANNER_PORT = 7000;
const UPGRADE_PORT = 7100;
/** The agent's default --protocol-detect-timeout. */
const DETECT_MS = 500;
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const VIP = {
  web: '10.96.0.10',
  webV1: '10.96.0.11',
  webV2: '10.96.0.12',
  shadow: '10.96.0.13',
  split: '10.96.0.14',
  mirrored: '10.96.0.15',
  edge: '10.96.0.16',
  grpc: '10.96.0.20',
  grpcDetect: '10.96.0.21',
  grpcRouted: '10.96.0.22',
  grpcV1: '10.96.0.23',
  grpcV2: '10.96.0.24',
  banner: '10.96.0.30',
  bannerTcp: '10.96.0.31',
  upgrade: '10.96.0.32',
} as const;

interface Echoed {
  pod: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  httpVersion: string;
  bodyLength: number;
}
interface Response {
  status: number;
  headers: Record<string, string>;
  body: string;
}
interface LoadResult {
  completed: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  errors: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number } | null;
}
interface GrpcResult {
  ok: number;
  byPod: Record<string, number>;
  codes: Record<string, number>;
  streams?: Record<'server' | 'bidi', { code: string; received: number; byPod: Record<string, number> }>;
  headers: Record<string, string> | null;
  errors: string[];
}
interface RawResult {
  ok: boolean;
  received: string;
  closed: boolean;
  error: string | null;
  firstByteMs: number | null;
  expectMs: number[];
  ms: number;
}
interface LogLine {
  name: string;
  method: string;
  path: string;
  headers: Record<string, string>;
}

const service = (name: string, clusterIP: string, selector: Record<string, string>, port: number, targetPort: number, appProtocol?: string): Doc =>
  serviceDoc({ name, namespace: NS, clusterIP, selector, ports: [{ name: 'main', port, targetPort, ...(appProtocol ? { appProtocol } : {}) }] } satisfies ServiceSpec);
const ref = (name: string, port: number, extra: Doc = {}): Doc => ({ group: '', kind: 'Service', name, port, ...extra });
const route = (kind: 'HTTPRoute' | 'GRPCRoute', name: string, parent: string, port: number, rules: Doc[]): Doc => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind,
  metadata: { name, namespace: NS },
  spec: { parentRefs: [ref(parent, port)], rules },
});

/** Frame types and GOAWAY error codes of the HTTP/2 frames in `bytes` (a server's answer). */
function h2Frames(bytes: Buffer): Array<{ type: number; goawayCode?: number }> {
  const frames: Array<{ type: number; goawayCode?: number }> = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    const type = bytes[at + 3] as number;
    frames.push(type === 7 && at + 17 <= bytes.length ? { type, goawayCode: bytes.readUInt32BE(at + 13) } : { type });
    at += 9 + length;
  }
  return frames;
}
const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
};

describe('L7 routing end to end: detection, HTTP/1.1, h2c, gRPC, Gateway API routes, malformed input', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  let logDir: string;
  const agents = new Map<string, AgentProcess>();
  const agent = (node: string) => agents.get(node) as AgentProcess;

  const inClient = (argv: string[], timeoutMs = 15_000) => tb.exec({ pod: 'client' }, argv, { timeoutMs });
  const fixtureJson = async <T>(script: string, args: string[], timeoutMs = 30_000): Promise<T> => {
    const r = await inClient([process.execPath, path.join(FIXTURES, script), ...args], timeoutMs);
    assert.equal(r.code, 0, `${script} ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** One curl request (one URL: curl 7.88 cannot reuse an h2c connection); -i head parsed. */
  const curl = async (url: string, extra: string[] = []): Promise<Response> => {
    const r = await inClient(['curl', '-sS', '-i', '--max-time', '3', ...extra, url]);
    assert.equal(r.code, 0, `curl ${extra.join(' ')} ${url}: ${r.stderr}`);
    const split = r.stdout.indexOf('\r\n\r\n');
    const [statusLine = '', ...lines] = r.stdout.slice(0, split).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    return { status: Number(statusLine.split(' ')[1]), headers, body: r.stdout.slice(split + 4) };
  };
  const echoed = (r: Response): Echoed => JSON.parse(r.body) as Echoed;
  const load = (url: string, args: string[] = []) => fixtureJson<LoadResult>('http-load.mjs', ['--url', url, '--timeout-ms', '3000', '--max-ms', '40000', ...args], 45_000);
  const grpcCall = (target: string, args: string[] = []) => fixtureJson<GrpcResult>('grpc-client.mjs', ['--target', target, '--deadline-ms', '3000', ...args], 30_000);
  const raw = (host: string, port: number, steps: Array<Buffer | string>, opts: { waitClose?: boolean; waitMs?: number } = {}) =>
    fixtureJson<RawResult>('raw-client.mjs', [
      '--host', host,
      '--port', String(port),
      ...steps.flatMap((s) => ['--step', typeof s === 'string' ? `expect:${s}` : `send:${s.toString('base64')}`]),
      ...(opts.waitClose ? ['--wait-close'] : []),
      '--wait-ms', String(opts.waitMs ?? 3000),
    ]);
  const logFile = (pod: string) => path.join(logDir, `${pod}.jsonl`);
  const logLines = (pod: string): LogLine[] =>
    readFileSync(logFile(pod), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine);
  const clearLogs = () => [...BACKENDS, 'shadow'].forEach((p) => writeFileSync(logFile(p), ''));
  const status = (node: string) => agent(node).json<AgentStatus>(['status']);
  /** The source node's agent is still the same process, answers its admin API, and serves a request. */
  const assertProxyHealthy = async () => {
    const pid = agent('n1').pid as number;
    assert.doesNotThrow(() => process.kill(pid, 0), 'the agent process is gone');
    assert.ok((await status('n1')).config.version > 0);
    const r = await curl(`http://${VIP.web}/still-alive`, ['--http2-prior-knowledge']);
    assert.equal(r.status, 200);
  };

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        {
          name: 'n1',
          pods: [
            { name: 'client', namespace: NS, labels: { app: 'client' }, serviceAccount: 'client' },
            { name: 'web-1', namespace: NS, labels: { app: 'web', track: 'v1' }, serviceAccount: 'web' },
            { name: 'shadow', namespace: NS, labels: { app: 'shadow' }, serviceAccount: 'web' },
          ],
        },
        {
          name: 'n2',
          pods: [
            { name: 'web-2', namespace: NS, labels: { app: 'web', track: 'v1', role: 'stream' }, serviceAccount: 'web' },
            { name: 'web-3', namespace: NS, labels: { app: 'web', track: 'v2' }, serviceAccount: 'web' },
          ],
        },
      ],
      namespaces: { [NS]: { 'nodemesh.io/mode': 'enabled' } },
    });
    logDir = path.join(tb.scratchDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    await Promise.all([
      ...[...BACKENDS, 'shadow'].map((pod) => tb.startFixture(pod, 'http-backend.mjs', ['--port', String(HTTP_PORT), '--name', pod, '--log', logFile(pod)])),
      ...BACKENDS.map((pod) => tb.startFixture(pod, 'grpc-backend.mjs', ['--port', String(GRPC_PORT), '--name', pod])),
      tb.startFixture('web-2', 'stream-server.mjs', ['--name', 'web-2', '--banner-port', String(BANNER_PORT), '--upgrade-port', String(UPGRADE_PORT)]),
    ]);
    const docs: Doc[] = [
      ...testbedDocs(tb),
      service('web', VIP.web, { app: 'web' }, 80, HTTP_PORT),
      service('web-v1', VIP.webV1, { track: 'v1' }, 80, HTTP_PORT),
      service('web-v2', VIP.webV2, { track: 'v2' }, 80, HTTP_PORT),
      service('shadow', VIP.shadow, { app: 'shadow' }, 80, HTTP_PORT),
      service('split', VIP.split, { app: 'web' }, 80, HTTP_PORT),
      service('mirrored', VIP.mirrored, { app: 'web' }, 80, HTTP_PORT),
      service('edge', VIP.edge, { app: 'web' }, 80, HTTP_PORT),
      service('grpc', VIP.grpc, { app: 'web' }, GRPC_PORT, GRPC_PORT, 'grpc'),
      service('grpc-detect', VIP.grpcDetect, { app: 'web' }, GRPC_PORT, GRPC_PORT),
      service('grpc-routed', VIP.grpcRouted, { app: 'web' }, GRPC_PORT, GRPC_PORT, 'kubernetes.io/h2c'),
      service('grpc-v1', VIP.grpcV1, { track: 'v1' }, GRPC_PORT, GRPC_PORT),
      service('grpc-v2', VIP.grpcV2, { track: 'v2' }, GRPC_PORT, GRPC_PORT),
      service('banner', VIP.banner, { role: 'stream' }, BANNER_PORT, BANNER_PORT),
      service('banner-tcp', VIP.bannerTcp, { role: 'stream' }, BANNER_PORT, BANNER_PORT, 'tcp'),
      service('upgrade', VIP.upgrade, { role: 'stream' }, 80, UPGRADE_PORT),
      route('HTTPRoute', 'split', 'split', 80, [
        { matches: [{ headers: [{ name: 'x-version', value: 'v2' }] }], backendRefs: [ref('web-v2', 80)] },
        { backendRefs: [ref('web-v1', 80, { weight: 90 }), ref('web-v2', 80, { weight: 10 })] },
      ]),
      route('HTTPRoute', 'mirrored', 'mirrored', 80, [
        { filters: [{ type: 'RequestMirror', requestMirror: { backendRef: ref('shadow', 80) } }], backendRefs: [ref('web-v1', 80)] },
      ]),
      route('HTTPRoute', 'edge', 'edge', 80, [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
          filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'new.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' }, statusCode: 301 } }],
        },
        {
          matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
          filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'internal.shop', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } }],
          backendRefs: [ref('web-v2', 80)],
        },
        { matches: [{ path: { type: 'Exact', value: '/ghost' } }], backendRefs: [ref('ghost', 80)] },
      ]),
      route('GRPCRoute', 'grpc-routed', 'grpc-routed', GRPC_PORT, [
        { matches: [{ method: { service: 'nodemesh.test.Echo', method: 'Unary' } }], backendRefs: [ref('grpc-v2', GRPC_PORT)] },
        { backendRefs: [ref('grpc-v1', GRPC_PORT)] },
      ]),
    ];
    const configFile = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(configFile, docs);
    for (const node of ['n1', 'n2']) {
      const a = new AgentProcess(tb, node, ['--access-log', 'off']);
      agents.set(node, a);
      await a.start(configFile);
    }
    const s = await status('n1');
    assert.deepEqual(s.config.rejections, [], 'every resource of the test configuration is accepted');
  });

  after(async () => {
    try {
      for (const a of agents.values()) await a.remove();
    } finally {
      await tb?.destroy();
    }
  });

  it('HTTP/1.1 and h2c to a Service VIP: 200 from a backend with x-request-id, x-forwarded-for and the Host kept', async () => {
    const host = 'web.shop.svc.cluster.local';
    const h1 = await curl(`http://${VIP.web}/hello?x=1`, ['-H', `Host: ${host}`]);
    assert.equal(h1.status, 200, h1.body);
    const b1 = echoed(h1);
    assert.ok(BACKENDS.includes(b1.pod as (typeof BACKENDS)[number]), b1.pod);
    assert.equal(h1.headers['x-pod'], b1.pod);
    assert.equal(b1.httpVersion, '1.1');
    assert.equal(b1.path, '/hello?x=1');
    assert.equal(b1.headers.host, host);
    assert.match(b1.headers['x-request-id'] ?? '', UUID);
    assert.equal(b1.headers['x-forwarded-for'], tb.podIP('client'));

    const h2 = await curl(`http://${VIP.web}/hello?x=2`, ['--http2-prior-knowledge', '-H', `Host: ${host}`]);
    assert.equal(h2.status, 200, h2.body);
    const b2 = echoed(h2);
    assert.equal(b2.httpVersion, '2.0', 'h2c from the client stays HTTP/2 to the backend');
    assert.equal(b2.path, '/hello?x=2');
    assert.equal(b2.headers[':authority'], host);
    assert.match(b2.headers['x-request-id'] ?? '', UUID);
    assert.equal(b2.headers['x-forwarded-for'], tb.podIP('client'));

    // A request id the client already set is kept; the proxy appends to an existing chain.
    const own = echoed(await curl(`http://${VIP.web}/`, ['-H', 'x-request-id: abc-123', '-H', 'x-forwarded-for: 192.0.2.7']));
    assert.equal(own.headers['x-request-id'], 'abc-123');
    assert.equal(own.headers['x-forwarded-for'], `192.0.2.7, ${tb.podIP('client')}`);
  });

  it('no route attached: the Service as a whole, balanced per request on keep-alive and h2c connections', async () => {
    for (const args of [[], ['--http2']]) {
      const r = await load(`http://${VIP.web}/`, ['--requests', '60', '--concurrency', '2', ...args]);
      assert.deepEqual(r.statuses, { 200: 60 }, JSON.stringify(r));
      // Connection setup is left out of an endpoint's latency, so a pod whose first stream
      // waited for its connection is not shunned.
      assert.deepEqual(Object.keys(r.byPod).sort(), [...BACKENDS], `${args.join(' ') || 'HTTP/1.1'}: ${JSON.stringify(r.byPod)}`);
    }
  });

  it('h2load: 2000 HTTP/2 requests through the mesh, all 2xx, spread over the three backends', async (t) => {
    clearLogs();
    const r = await inClient(['h2load', '-n', '2000', '-c', '4', '-m', '10', '-T', '10', `http://${VIP.web}/h2load`], 60_000);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/, r.stdout);
    assert.match(r.stdout, /status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx/, r.stdout);
    const byPod = Object.fromEntries(BACKENDS.map((p) => [p, logLines(p).filter((l) => l.path === '/h2load').length]));
    t.diagnostic(`h2load ${/finished in .*/.exec(r.stdout)?.[0] ?? ''}; backends ${JSON.stringify(byPod)}`);
    assert.equal(Object.values(byPod).reduce((a, b) => a + b, 0), 2000, JSON.stringify(byPod));
    for (const pod of BACKENDS) assert.ok((byPod[pod] ?? 0) >= 100, `${pod} got ${byPod[pod]} of 2000: ${JSON.stringify(byPod)}`);
    // Four client connections, one multiplexed upstream session per endpoint.
    const pooled = (await status('n1')).pooledUpstream;
    assert.ok(pooled.h2 >= 1 && pooled.h2 <= BACKENDS.length, JSON.stringify(pooled));
  });

  it('gRPC: unary calls on one channel balanced per request over the three pods; server and bidi streams work', async (t) => {
    for (const [what, vip, calls] of [['appProtocol grpc', VIP.grpc, 60], ['detected', VIP.grpcDetect, 60]] as const) {
      const r = await grpcCall(`${vip}:${GRPC_PORT}`, ['--calls', String(calls), '--concurrency', '2', '--stream', '--count', '5', '--metadata', 'x-trace=abc']);
      t.diagnostic(`${what}: ${JSON.stringify(r.byPod)}`);
      assert.equal(r.ok, calls, `${what}: ${JSON.stringify(r)}`);
      assert.deepEqual(Object.keys(r.byPod).sort(), [...BACKENDS], `${what}: ${JSON.stringify(r.byPod)}`);
      assert.equal(r.headers?.['x-trace'], 'abc', 'request metadata reached the backend and came back');
      assert.deepEqual(
        { server: [r.streams?.server.code, r.streams?.server.received], bidi: [r.streams?.bidi.code, r.streams?.bidi.received] },
        { server: ['OK', 5], bidi: ['OK', 5] },
        `${what}: ${JSON.stringify(r.streams)}`,
      );
    }
  });

  it('GRPCRoute: a method match sends that method to another backend set', async () => {
    const r = await grpcCall(`${VIP.grpcRouted}:${GRPC_PORT}`, ['--calls', '20', '--concurrency', '2', '--stream', '--count', '3']);
    assert.equal(r.ok, 20, JSON.stringify(r));
    assert.deepEqual(r.byPod, { 'web-3': 20 }, 'Unary goes to grpc-v2');
    for (const kind of ['server', 'bidi'] as const) {
      const s = r.streams?.[kind];
      assert.equal(s?.code, 'OK', JSON.stringify(r.streams));
      assert.equal(s?.received, 3);
      for (const pod of Object.keys(s?.byPod ?? {})) assert.ok(pod === 'web-1' || pod === 'web-2', `${kind} stream answered by ${pod}, not grpc-v1`);
    }
  });

  it('HTTPRoute: a 90/10 weighted split over 2000 requests lands within 4 sd; a header match routes to v2', async (t) => {
    const n = 2000;
    const r = await load(`http://${VIP.split}/`, ['--requests', String(n), '--concurrency', '8']);
    assert.deepEqual(r.statuses, { 200: n }, JSON.stringify(r));
    const v2 = r.byPod['web-3'] ?? 0;
    const v1 = (r.byPod['web-1'] ?? 0) + (r.byPod['web-2'] ?? 0);
    const sd = Math.sqrt(n * 0.1 * 0.9);
    t.diagnostic(`split: v1 ${v1} (${JSON.stringify(r.byPod)}), v2 ${v2}; expected 200 ± ${(4 * sd).toFixed(1)}`);
    assert.equal(v1 + v2, n);
    assert.ok(Math.abs(v2 - n * 0.1) <= 4 * sd, `v2 got ${v2} of ${n}, outside 200 ± ${4 * sd}`);

    const pinned = await load(`http://${VIP.split}/`, ['--requests', '20', '--concurrency', '2', '--header', 'x-version:v2']);
    assert.deepEqual(pinned.byPod, { 'web-3': 20 }, JSON.stringify(pinned));
    const h2 = await curl(`http://${VIP.split}/`, ['--http2-prior-knowledge', '-H', 'x-version: v2']);
    assert.equal(echoed(h2).pod, 'web-3');
  });

  it('RequestMirror: the mirror backend receives a copy of each request; the client sees only the primary', async () => {
    clearLogs();
    const r = await load(`http://${VIP.mirrored}/mirror-me`, ['--requests', '20', '--concurrency', '2', '--method', 'POST', '--body-bytes', '300']);
    assert.deepEqual(r.statuses, { 200: 20 }, JSON.stringify(r));
    for (const pod of Object.keys(r.byPod)) assert.ok(pod === 'web-1' || pod === 'web-2', `answered by ${pod}`);
    const copies = await agent('n1').until('20 mirrored copies', async () => {
      const lines = logLines('shadow').filter((l) => l.path === '/mirror-me');
      return lines.length >= 20 ? lines : undefined;
    });
    assert.equal(copies.length, 20);
    for (const c of copies) {
      assert.equal(c.method, 'POST');
      assert.equal(c.headers.host, `${VIP.mirrored}-shadow`, 'Envoy marks mirrored requests with a -shadow authority');
    }
    const primaries = BACKENDS.flatMap((p) => logLines(p)).filter((l) => l.path === '/mirror-me');
    assert.equal(primaries.length, 20, 'each request reached one primary once');
  });

  it('RequestRedirect and URLRewrite: status and Location, rewritten path and host at the backend', async () => {
    clearLogs();
    for (const extra of [[], ['--http2-prior-knowledge']]) {
      const redirect = await curl(`http://${VIP.edge}/old/page?q=1`, extra);
      assert.equal(redirect.status, 301, redirect.body);
      assert.equal(redirect.headers.location, 'http://new.example/new/page?q=1');

      const rewritten = await curl(`http://${VIP.edge}/api/items?x=1`, extra);
      assert.equal(rewritten.status, 200, rewritten.body);
      const b = echoed(rewritten);
      assert.equal(b.pod, 'web-3');
      assert.equal(b.path, '/v2/items?x=1');
      assert.equal(extra.length === 0 ? b.headers.host : b.headers[':authority'], 'internal.shop');
    }
    assert.equal(BACKENDS.flatMap((p) => logLines(p)).filter((l) => l.path.startsWith('/old') || l.path.startsWith('/new')).length, 0, 'a redirect never reaches a backend');
  });

  it('a rule whose backend Service does not exist answers 500; routes attached but none matching answer 404', async () => {
    for (const extra of [[], ['--http2-prior-knowledge']]) {
      const ghost = await curl(`http://${VIP.edge}/ghost`, extra);
      assert.equal(ghost.status, 500);
      assert.match(ghost.body, /shop\/ghost:80 does not exist/);
      const none = await curl(`http://${VIP.edge}/elsewhere`, extra);
      assert.equal(none.status, 404);
      assert.match(none.body, /no route of shop\/edge matches GET \/elsewhere/);
    }
  });

  it('malformed HTTP/1.1: an invalid header line gets 400, headers over 16 KiB get 431; the proxy keeps serving', async () => {
    const bad = await raw(VIP.web, 80, [Buffer.from(`GET / HTTP/1.1\r\nHost: ${VIP.web}\r\nthis is not a header\r\n\r\n`), 'HTTP/1.1 '], { waitClose: true });
    const text = Buffer.from(bad.received, 'base64').toString('latin1');
    assert.ok(bad.ok, JSON.stringify(bad));
    assert.match(text, /^HTTP\/1\.1 400 /);
    assert.ok(bad.closed, 'the connection is closed after the error');
    await assertProxyHealthy();

    const big = await curl(`http://${VIP.web}/`, ['-H', `x-big: ${'a'.repeat(17 * 1024)}`]);
    assert.equal(big.status, 431);
    await assertProxyHealthy();
  });

  it('invalid HTTP/2 frames get a GOAWAY with an error code, never a crash or a stall; other connections keep working', async (t) => {
    const settings = frame(4, 0, 0, Buffer.alloc(0));
    const cases: Array<[string, Buffer]> = [
      // The first frame after the preface must be SETTINGS; these bytes are not even a frame.
      ['garbage after the preface', Buffer.concat([H2_PREFACE, Buffer.alloc(64, 0xff)])],
      // A SETTINGS payload must be a multiple of 6 bytes.
      ['a SETTINGS frame of 5 bytes', Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(5))])],
      // A header block that is not HPACK.
      ['a HEADERS frame with a broken header block', Buffer.concat([H2_PREFACE, settings, frame(1, 0x5, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))])],
    ];
    // Well-formed h2c traffic on other connections while the bad ones arrive.
    const busy = load(`http://${VIP.web}/busy`, ['--http2', '--requests', '300', '--concurrency', '4']);
    for (const [what, bytes] of cases) {
      // Node's HTTP/2 sends nghttp2's connection-error GOAWAY but leaves the socket open (the
      // RFC says the endpoint MUST close it) when nghttp2 handled the error itself, so a close
      // is not awaited for longer than it takes the GOAWAY to arrive.
      const r = await raw(VIP.web, 80, [bytes], { waitClose: true, waitMs: 1000 });
      assert.equal(r.error, null, `${what}: ${JSON.stringify(r)}`);
      const frames = h2Frames(Buffer.from(r.received, 'base64'));
      const goaway = frames.find((f) => f.type === 7);
      t.diagnostic(`${what}: GOAWAY code ${goaway?.goawayCode}, ${r.closed ? `closed after ${r.ms} ms` : 'left open'}`);
      assert.ok(goaway !== undefined && goaway.goawayCode !== 0, `${what}: frames ${JSON.stringify(frames)}`);
    }
    const r = await busy;
    assert.deepEqual(r.statuses, { 200: 300 }, JSON.stringify(r));
    await assertProxyHealthy();
  });

  it('a server-first TCP protocol is relayed after the detect timeout without appProtocol, at once with appProtocol tcp', async (t) => {
    const talk = [`220 web-2 ready\r\n`, Buffer.from('ping\r\n'), 'ping\r\n'];
    const detected = await raw(VIP.banner, BANNER_PORT, talk);
    const declared = await raw(VIP.bannerTcp, BANNER_PORT, talk);
    t.diagnostic(`banner after ${detected.firstByteMs} ms with detection, ${declared.firstByteMs} ms with appProtocol tcp`);
    assert.ok(detected.ok, JSON.stringify(detected));
    assert.ok(declared.ok, JSON.stringify(declared));
    assert.ok((detected.firstByteMs ?? 0) >= DETECT_MS - 50, `banner after ${detected.firstByteMs} ms: before the detect timeout ran out`);
    assert.ok((detected.firstByteMs ?? Infinity) < DETECT_MS + 1500, `banner after ${detected.firstByteMs} ms`);
    assert.ok((declared.firstByteMs ?? Infinity) < DETECT_MS - 100, `banner after ${declared.firstByteMs} ms with appProtocol tcp`);
  });

  it('an HTTP/1.1 Upgrade (WebSocket style) passes through: 101 from the backend, then bytes both ways', async () => {
    const upgrade = Buffer.from(`GET /chat HTTP/1.1\r\nHost: ${VIP.upgrade}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    const r = await raw(VIP.upgrade, 80, [upgrade, '\r\n\r\n', Buffer.from('frame-one'), 'frame-one', Buffer.from('frame-two'), 'frame-two']);
    const text = Buffer.from(r.received, 'base64').toString('latin1');
    assert.ok(r.ok, JSON.stringify({ ...r, text }));
    assert.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(text, /\r\nx-pod: web-2\r\n/);
    assert.match(text, /\r\nx-path: \/chat\r\n/);
    assert.ok(text.endsWith('\r\n\r\nframe-oneframe-two'), JSON.stringify(text));
  });
});
