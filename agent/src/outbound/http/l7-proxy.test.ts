import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { Clusters } from '../cluster.js';
import { Inbound } from '../../inbound/inbound.js';
import { OutboundProxy, type Origin } from '../outbound.js';
import { UpstreamDialer } from '../upstream-dial.js';
import type { MeshIndex } from '../../state/mesh-index.js';
import { FlowTable } from '../../telemetry/flow-table.js';
import type { RequestRecord } from '../../telemetry/request-record.js';
import { indexFromYaml, memoryLogger, nodeAndShop } from '../../testing/mesh.js';
import { L7Proxy } from './l7-proxy.js';

// Loopback stands in for the pod network: backends web-1..3 on 127.0.0.2..4 (HTTP/1.1 on
// PORT, h2c on PORT + 1), a
// client pod 127.0.0.9, Service VIPs 10.96.0.x that only the proxy's lookup knows.
const PORT = 18_180;
const pod = (name: string, ip: string, labels: string) => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { ${labels} } }
spec: { nodeName: n1 }
status: { podIP: ${ip} }
`;
const service = (name: string, ip: string, selector: string, appProtocol = '') => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: shop }
spec: { clusterIP: ${ip}, selector: { ${selector} }, ports: [{ port: 80, targetPort: ${appProtocol ? `${PORT + 1}, appProtocol: ${appProtocol}` : PORT} }] }
`;
const BASE = `${nodeAndShop('n1', '127.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, annotations: { nodemesh.io/cgroup: /sys/fs/cgroup/client } }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.9 }
${pod('web-1', '127.0.0.2', 'app: web, version: v1')}${pod('web-2', '127.0.0.3', 'app: web, version: v1')}${pod('web-3', '127.0.0.4', 'app: web, version: v2')}
${service('web', '10.96.0.10', 'app: web')}${service('web-v1', '10.96.0.11', 'version: v1')}${service('web-v2', '10.96.0.12', 'version: v2')}${service('flaky', '10.96.0.13', 'app: web')}${service('grpc', '10.96.0.14', 'app: web', 'kubernetes.io/h2c')}`;

const route = (name: string, parent: string, rules: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ${name}, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: ${parent}, port: 80 }]
  rules:
${rules}
`;

interface Seen {
  pod: string;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
}

describe('L7 outbound proxy (loopback)', () => {
  const origins = new Map<string, Origin>();
  let sources = 0;
  const { log } = memoryLogger();
  let index: MeshIndex;
  let proxy: OutboundProxy;
  let l7: L7Proxy;
  let proxyPort: number;
  const seen: Seen[] = [];
  /** Share of requests web-1 and web-2 fail with 503 ("flaky" tests). */
  let failRate = 0;
  const servers: Array<http.Server | http2.Http2Server> = [];
  /** What both reporters told: the L7 proxy (source) and the same-node inbound path (destination). */
  const records: RequestRecord[] = [];
  const observers = [{ request: (r: RequestRecord) => records.push(r) }];

  const setConfig = (extra = '') => {
    index = indexFromYaml(BASE + extra, 'n1');
    assert.deepEqual(index.state.rejections, []);
    l7.update(index);
  };

  /** A client socket as a redirected pod's would be: the origin recorded before connecting. */
  const redirected = (vip: string) => {
    sources += 1;
    const localAddress = `127.1.${Math.floor(sources / 250)}.${(sources % 250) + 1}`;
    origins.set(localAddress, { dstIP: vip, dstPort: 80, cgroupId: 1n, cookie: BigInt(sources) });
    return localAddress;
  };

  const get = (vip: string, path: string, headers: Record<string, string> = {}, method = 'GET') =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxyPort, localAddress: redirected(vip), method, path, headers: { host: 'web.shop', ...headers }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    for (const [i, name] of ['web-1', 'web-2', 'web-3'].entries()) {
      const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
        seen.push({ pod: name, method: req.method ?? '', path: req.url ?? '', headers: req.headers as http.IncomingHttpHeaders, rawHeaders: req.rawHeaders });
        let n = 0;
        req.on('data', (c: Buffer) => (n += c.length));
        req.on('end', () => {
          const fail = name !== 'web-3' && Math.random() < failRate;
          res.writeHead(fail ? 503 : 200, { 'content-type': 'application/json', 'x-backend': name });
          res.end(JSON.stringify({ pod: name, path: req.url, bytes: n, host: req.headers.host ?? req.headers[':authority'] }));
        });
      };
      const h1 = http.createServer(handler);
      const h2 = http2.createServer(handler);
      h1.listen(PORT, `127.0.0.${i + 2}`);
      h2.listen(PORT + 1, `127.0.0.${i + 2}`);
      await Promise.all([once(h1, 'listening'), once(h2, 'listening')]);
      servers.push(h1, h2);
    }
    const inbound = new Inbound({ index: () => index, connectTimeoutMs: 2000, detectTimeoutMs: 300, log, observers });
    const dialer = new UpstreamDialer({
      hbonePort: 15008,
      connectTimeoutMs: 2000,
      identityOf: (p) => ({ spiffe: `spiffe://cluster.local/ns/${p.namespace}/sa/${p.serviceAccount}`, principal: `cluster.local/ns/${p.namespace}/sa/${p.serviceAccount}` }),
      inbound,
      tunnels: { connect: () => Promise.reject(new Error('no other node here')) },
    });
    const clusters = new Clusters();
    l7 = new L7Proxy({ index: () => index, dialer, clusters, log, observers });
    setConfig();
    proxy = new OutboundProxy(
      { detectTimeoutMs: 300 },
      { lookupOrigin: (ip) => origins.get(ip) ?? null, index: () => index, dialer, l7, clusters, flows: new FlowTable(), log },
    );
    await proxy.listen('127.0.0.1', 0);
    proxyPort = Number(proxy.address.split(':')[1]);
  });

  after(async () => {
    await proxy.close(0);
    l7.close();
    for (const s of servers) s.close();
  });

  it('forwards HTTP/1.1 with Host kept, x-request-id and x-forwarded-for added, hop-by-hop dropped', async () => {
    seen.length = 0;
    const r = await get('10.96.0.10', '/hello?x=1', { connection: 'keep-alive, x-secret', 'x-secret': 'hop', 'x-forwarded-for': '1.2.3.4' });
    assert.equal(r.status, 200);
    const s = seen.at(-1) as Seen;
    assert.equal(s.path, '/hello?x=1');
    assert.equal(s.headers.host, 'web.shop');
    assert.match(String(s.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.match(String(s.headers['x-forwarded-for']), /^1\.2\.3\.4, 127\.1\.\d+\.\d+$/);
    assert.equal(s.headers['x-secret'], undefined);
  });

  it('balances requests of one connection across the endpoints', async () => {
    // Round robin makes the spread certain; the default (peak EWMA) favours the fastest pod.
    setConfig(`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: shop }
spec: { host: web, trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } } }
`);
    seen.length = 0;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: redirected('10.96.0.10') });
    for (let i = 0; i < 30; i += 1) {
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent }, (res) => res.resume().on('end', resolve)).on('error', reject);
      });
    }
    agent.destroy();
    const perPod = new Map<string, number>();
    for (const s of seen) perPod.set(s.pod, (perPod.get(s.pod) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries([...perPod].sort()), { 'web-1': 10, 'web-2': 10, 'web-3': 10 });
  });

  it('balances over the current endpoints after a change, also when a connection opened before it sends the first request', async () => {
    const roundRobin = `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: shop }
spec: { host: web, trafficPolicy: { loadBalancer: { simple: ROUND_ROBIN } } }
`;
    setConfig(roundRobin);
    const send = (agent: http.Agent) =>
      new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: proxyPort, path: '/', agent }, (res) => res.resume().on('end', resolve)).on('error', reject);
      });
    const early = new http.Agent({ keepAlive: true, maxSockets: 1, localAddress: redirected('10.96.0.10') });
    await send(early);
    // web-3 leaves the Service while that connection stays open; its next request comes first.
    index = indexFromYaml(BASE.replace('name: web-3, namespace: shop, labels: { app: web,', 'name: web-3, namespace: shop, labels: { app: gone,') + roundRobin, 'n1');
    l7.update(index);
    await send(early);
    early.destroy();
    seen.length = 0;
    for (let i = 0; i < 20; i += 1) await send(new http.Agent({ keepAlive: false, localAddress: redirected('10.96.0.10') }));
    const perPod = new Map<string, number>();
    for (const s of seen) perPod.set(s.pod, (perPod.get(s.pod) ?? 0) + 1);
    assert.deepEqual(Object.fromEntries([...perPod].sort()), { 'web-1': 10, 'web-2': 10 });
  });

  it('routes by header to v2, splits 90/10 by weight, answers 404 when no rule matches', async () => {
    setConfig(
      route(
        'web-split',
        'web',
        `    - matches: [{ path: { type: PathPrefix, value: /api }, headers: [{ name: x-canary, value: "yes" }] }]
      backendRefs: [{ name: web-v2, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /api } }]
      backendRefs: [{ name: web-v1, port: 80, weight: 90 }, { name: web-v2, port: 80, weight: 10 }]`,
      ),
    );
    assert.equal(JSON.parse((await get('10.96.0.10', '/api', { 'x-canary': 'yes' })).body).pod, 'web-3');
    const counts = { v1: 0, v2: 0 };
    for (let i = 0; i < 400; i += 1) {
      const pod = JSON.parse((await get('10.96.0.10', '/api/x')).body).pod as string;
      counts[pod === 'web-3' ? 'v2' : 'v1'] += 1;
    }
    // 10% of 400 = 40, sd ≈ 6: far outside 5 sd would be a bug.
    assert.ok(counts.v2 > 10 && counts.v2 < 70, JSON.stringify(counts));
    const miss = await get('10.96.0.10', '/other');
    assert.equal(miss.status, 404);
  });

  it('redirects and rewrites as the route says; a missing backend gives 500', async () => {
    setConfig(
      route(
        'web-filters',
        'web',
        `    - matches: [{ path: { type: PathPrefix, value: /old } }]
      filters: [{ type: RequestRedirect, requestRedirect: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /new }, statusCode: 302 } }]
    - matches: [{ path: { type: PathPrefix, value: /v1 } }]
      filters:
        - { type: URLRewrite, urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /v2 } } }
        - { type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-added, value: "1" }] } }
        - { type: ResponseHeaderModifier, responseHeaderModifier: { remove: [x-backend] } }
      backendRefs: [{ name: web, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /gone } }]
      backendRefs: [{ name: nowhere, port: 80 }]`,
      ),
    );
    const redirect = await get('10.96.0.10', '/old/page?q=1');
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.location, 'http://web.shop/new/page?q=1');
    seen.length = 0;
    const rewritten = await get('10.96.0.10', '/v1/items');
    assert.equal(rewritten.status, 200);
    assert.equal(seen[0]?.path, '/v2/items');
    assert.equal(seen[0]?.headers['x-added'], '1');
    assert.equal(rewritten.headers['x-backend'], undefined);
    assert.equal((await get('10.96.0.10', '/gone')).status, 500);
  });

  it('retries listed status codes on other endpoints: a 50% failing backend looks healthy', async () => {
    setConfig(route('flaky', 'flaky', `    - backendRefs: [{ name: flaky, port: 80 }]\n      retry: { codes: [503], attempts: 10, backoff: 1ms }`));
    failRate = 0.5;
    try {
      let ok = 0;
      for (let i = 0; i < 100; i += 1) if ((await get('10.96.0.13', '/')).status === 200) ok += 1;
      assert.equal(ok, 100);
    } finally {
      failRate = 0;
    }
  });

  it('speaks HTTP/2 with prior knowledge to the client and the backend', async () => {
    seen.length = 0;
    const session = http2.connect(`http://127.0.0.1:${proxyPort}`, { localAddress: redirected('10.96.0.14') } as http2.SecureClientSessionOptions);
    const results = await Promise.all(
      [1, 2, 3, 4, 5, 6].map(
        () =>
          new Promise<{ status: number; pod: string }>((resolve, reject) => {
            const s = session.request({ ':path': '/h2', ':authority': 'grpc.shop', 'x-multi': ['a', 'b'] });
            let body = '';
            let status = 0;
            s.on('response', (h) => (status = Number(h[':status'])));
            s.on('data', (c: Buffer) => (body += c.toString()));
            s.on('end', () => { try { resolve({ status, pod: (JSON.parse(body) as { pod: string }).pod }); } catch { reject(new Error(body)); } });
            s.on('error', reject);
          }),
      ),
    );
    session.close();
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
    assert.ok(new Set(results.map((r) => r.pod)).size > 1, 'one HTTP/2 connection is balanced per request');
    assert.equal(seen[0]?.headers[':authority'], 'grpc.shop');
    const raws = seen[0]?.rawHeaders ?? [];
    assert.deepEqual(raws.filter((_, i) => i % 2 === 1 && raws[i - 1] === 'x-multi'), ['a', 'b'], 'a repeated field stays two fields');
  });

  it('speaks HTTP/2 to a client detected by its first bytes (no appProtocol)', async () => {
    setConfig(`---
apiVersion: v1
kind: Service
metadata: { name: sniffed, namespace: shop }
spec: { clusterIP: 10.96.0.15, selector: { app: web }, ports: [{ port: 80, targetPort: ${PORT + 1} }] }
`);
    const session = http2.connect(`http://127.0.0.1:${proxyPort}`, { localAddress: redirected('10.96.0.15') } as http2.SecureClientSessionOptions);
    try {
      const status = await new Promise<number>((resolve, reject) => {
        session.on('error', reject);
        const s = session.request({ ':path': '/sniffed', ':authority': 'sniffed.shop' });
        let code = 0;
        s.on('response', (h) => (code = Number(h[':status'])));
        s.on('error', reject);
        s.on('end', () => resolve(code));
        s.resume();
      });
      assert.equal(status, 200);
    } finally {
      session.close();
      setConfig();
    }
  });

  it('answers a malformed request with 400 and keeps serving others', async () => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: redirected('10.96.0.10') });
    s.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n');
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString()));
    await once(s, 'close');
    assert.match(data, /^HTTP\/1\.1 400/);
    assert.equal((await get('10.96.0.10', '/')).status, 200);
  });

  /** Sends raw bytes on one redirected connection; resolves with all it got once closed. */
  const raw = async (bytes: string): Promise<string> => {
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress: redirected('10.96.0.10') });
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString()));
    s.write(bytes);
    await once(s, 'close');
    return data;
  };

  it('answers 400 to two Host headers or none, and serves nothing pipelined behind it', async () => {
    seen.length = 0;
    for (const first of ['GET /first HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n', 'GET /first HTTP/1.1\r\n\r\n']) {
      const data = await raw(`${first}GET /second HTTP/1.1\r\nhost: web.shop\r\n\r\n`);
      assert.match(data, /^HTTP\/1\.1 400/);
      assert.equal(data.match(/HTTP\/1\.1 /g)?.length, 1, data);
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen.map((x) => x.path), [], 'no request reached a backend');
  });

  it('routes an absolute-form request target by its path and authority', async () => {
    setConfig(route('web-api', 'web', `    - matches: [{ path: { type: PathPrefix, value: /api } }]
      backendRefs: [{ name: web-v2, port: 80 }]`));
    seen.length = 0;
    const data = await raw('GET http://web.shop/api/x?y=1 HTTP/1.1\r\nhost: web.shop\r\nconnection: close\r\n\r\n');
    assert.match(data, /^HTTP\/1\.1 200/);
    assert.equal(seen.at(-1)?.path, '/api/x?y=1');
    assert.equal(seen.at(-1)?.headers.host, 'web.shop');
  });

  it('keeps a repeated request header as separate fields', async () => {
    setConfig();
    seen.length = 0;
    await raw('GET / HTTP/1.1\r\nhost: web.shop\r\nx-multi: a\r\nx-multi: b\r\nconnection: close\r\n\r\n');
    const raws = seen.at(-1)?.rawHeaders ?? [];
    const values = raws.filter((_, i) => i % 2 === 1 && raws[i - 1]?.toLowerCase() === 'x-multi');
    assert.deepEqual(values, ['a', 'b']);
  });

  it('tells the destination its protocol: each request is recorded once by each reporter, with the same status', async () => {
    records.length = 0;
    for (const path of ['/r1', '/r2', '/r3']) assert.equal((await get('10.96.0.10', path)).status, 200);
    const session = http2.connect(`http://127.0.0.1:${proxyPort}`, { localAddress: redirected('10.96.0.14') } as http2.SecureClientSessionOptions);
    for (const path of ['/s1', '/s2']) {
      await new Promise<void>((resolve, reject) => {
        const s = session.request({ ':path': path, ':authority': 'grpc.shop' });
        s.resume();
        s.on('end', resolve);
        s.on('error', reject);
      });
    }
    session.close();
    const of = (reporter: string) => records.filter((r) => r.reporter === reporter);
    for (let i = 0; i < 100 && of('destination').length < 5; i++) await new Promise((r) => setTimeout(r, 10));
    const key = (r: RequestRecord) => [r.requestId, r.httpVersion, r.method, r.path, r.status, r.security, r.source.pod?.name].join(' ');
    assert.equal(of('source').length, 5);
    assert.deepEqual(of('destination').map(key).sort(), of('source').map(key).sort());
    for (const r of of('destination')) assert.equal(r.destination.endpoint?.kind === 'pod' && r.destination.endpoint.nodeName, 'n1');
  });
});
