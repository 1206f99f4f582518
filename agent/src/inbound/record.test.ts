import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import type { MeshIndex } from '../state/mesh-index.js';
import type { RequestRecord } from '../telemetry/request-record.js';
import { indexFromYaml, memoryLogger, nodeAndShop } from '../testing/mesh.js';
import { formatProtocol, parseProtocol } from '../hbone/protocol.js';
import { Inbound, type InboundRequest } from './inbound.js';
import { relay } from '../transport/relay.js';

// The destination reporter: connections the source declares HTTP go through the inbound
// filters, which emit one RequestRecord per request. Loopback stands in for the pod network:
// pod web-1 is 127.0.0.2 on node n1 (127.0.0.1), behind Service shop/web.
const CLIENT = 'cluster.local/ns/shop/sa/client';
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const policy = (name: string, spec: string) =>
  `---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;
const DENY_ADMIN = policy('deny-admin', `{ action: DENY, rules: [{ to: [{ operation: { paths: ['/admin*', '/pkg.Admin/*'] } }] }] }`);
const ONLY_PORT_1 = policy('deny-port-1', `{ action: DENY, rules: [{ to: [{ operation: { ports: ['1'] } }] }] }`);

describe('inbound: the destination reporter emits one RequestRecord per HTTP request', () => {
  let index: MeshIndex;
  const { log } = memoryLogger();
  const records: RequestRecord[] = [];
  const inbound = new Inbound({ index: () => index, connectTimeoutMs: 1000, detectTimeoutMs: 300, log, observers: [{ request: (r) => records.push(r) }] });
  let h1Pod: http.Server;
  let h2Pod: http2.Http2Server;
  let front: net.Server;
  let h1Port = 0;
  let h2Port = 0;
  let frontPort = 0;
  /** What the next connection through the front listener asks of Inbound.open. */
  let next: Partial<InboundRequest> & { port: number } = { port: 0 };
  /** Every byte the pods read, per connection. */
  const podReads: Buffer[] = [];
  /** The pods' sockets; a test may cut one. */
  const h1PodSockets: net.Socket[] = [];

  const configure = (...policies: string[]) => {
    index = indexFromYaml(
      `${nodeAndShop('n1', '127.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, labels: { app: client } }
spec: { nodeName: n1, serviceAccountName: client }
status: { podIP: 127.0.0.3 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: ${h1Port} }, { name: grpc, port: 9090, targetPort: ${h2Port} }] }
${policies.join('')}`,
      'n1',
    );
  };

  before(async () => {
    h1Pod = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/cut') {
          res.writeHead(200, { 'content-length': '100' });
          res.write('only ten..');
          setTimeout(() => req.socket.destroy(), 20);
          return;
        }
        res.setHeader('content-type', 'text/plain');
        if (req.url === '/missing') res.statusCode = 404;
        res.end(`pod saw ${req.method} ${req.url}`);
      });
    });
    h1Pod.on('connection', (s: net.Socket) => h1PodSockets.push(s));
    h2Pod = http2.createServer();
    h2Pod.on('stream', (stream, headers) => {
      stream.resume();
      const path = String(headers[':path']);
      if (path === '/pkg.Echo/Missing') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5' }, { endStream: true });
        return;
      }
      if (path.startsWith('/pkg.')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': path === '/pkg.Echo/Fail' ? '13' : '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end(`pod saw ${path}`);
    });
    for (const server of [h1Pod, h2Pod]) {
      server.on('connection', (s: net.Socket) => {
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('close', () => podReads.push(Buffer.concat(chunks)));
      });
      server.listen(0, '127.0.0.2');
      await once(server, 'listening');
    }
    h1Port = (h1Pod.address() as net.AddressInfo).port;
    h2Port = (h2Pod.address() as net.AddressInfo).port;

    front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, async (socket) => {
      const { port, ...rest } = next;
      const r = await inbound.open({ source: { principal: CLIENT, namespace: 'shop', ip: '127.0.0.3' }, target: { ip: '127.0.0.2', port }, ...rest });
      if ('stream' in r) await relay(socket, r.stream);
      else socket.resetAndDestroy();
    });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    frontPort = (front.address() as net.AddressInfo).port;
  });

  after(() => {
    front.close();
    h1Pod.close();
    h2Pod.close();
  });

  beforeEach(() => {
    configure();
    records.length = 0;
    podReads.length = 0;
    h1PodSockets.length = 0;
  });

  /** Raw HTTP/1.1 on one connection: sends `text`, reads until `until` matches, then closes. */
  const raw = async (text: string, until: RegExp): Promise<string> => {
    const s = net.connect(frontPort, '127.0.0.1');
    let data = '';
    const done = new Promise<string>((resolve) => {
      s.on('data', (c: Buffer) => {
        data += c.toString();
        if (until.test(data)) s.end();
      });
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
    });
    s.write(text);
    return done;
  };
  /** Records arrive as answers end; the last one may trail the client's read by a tick. */
  const recordsAtLeast = async (n: number): Promise<RequestRecord[]> => {
    for (let i = 0; i < 100 && records.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    return records;
  };

  it('the HBONE header names the inner protocol; unknown or absent values mean opaque TCP', () => {
    assert.equal(formatProtocol('h1'), 'http/1.1');
    assert.equal(formatProtocol('h2'), 'h2');
    assert.equal(parseProtocol('http/1.1'), 'h1');
    assert.equal(parseProtocol(['h2']), 'h2');
    assert.equal(parseProtocol('spdy/3'), undefined);
    assert.equal(parseProtocol(undefined), undefined);
  });

  it('HTTP/1.1 keep-alive: one record per request, body sizes without chunk framing; the pod gets the exact bytes', async () => {
    next = { port: h1Port, protocol: 'h1' };
    const sent =
      `GET /a?x=1 HTTP/1.1\r\nhost: web.shop\r\nx-request-id: r-1\r\ntraceparent: ${TRACEPARENT}\r\n\r\n` +
      'POST /b HTTP/1.1\r\nhost: web.shop\r\ncontent-length: 5\r\n\r\nhello' +
      'POST /c HTTP/1.1\r\nhost: web.shop\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n' +
      'GET /missing HTTP/1.1\r\nhost: web.shop\r\n\r\n';
    const out = await raw(sent, /pod saw GET \/missing/);
    assert.deepEqual([...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1])), [200, 200, 200, 404]);
    await recordsAtLeast(4);
    assert.deepEqual(
      records.map((r) => [r.method, r.path, r.status, r.requestBytes, r.responseBytes, r.responseFlags]),
      [
        ['GET', '/a?x=1', 200, 0, 'pod saw GET /a?x=1'.length, '-'],
        ['POST', '/b', 200, 5, 'pod saw POST /b'.length, '-'],
        ['POST', '/c', 200, 11, 'pod saw POST /c'.length, '-'],
        ['GET', '/missing', 404, 0, 'pod saw GET /missing'.length, '-'],
      ],
    );
    const [first] = records;
    assert.equal(first?.reporter, 'destination');
    assert.equal(first?.protocol, 'http');
    assert.equal(first?.httpVersion, '1.1');
    assert.equal(first?.authority, 'web.shop');
    assert.equal(first?.requestId, 'r-1');
    assert.equal(first?.retries, 0);
    assert.equal(first?.security, 'mutual_tls');
    assert.equal(first?.source.identity, `spiffe://${CLIENT}`);
    assert.equal(first?.source.pod, undefined, 'over HBONE the observers name the pod from the verified identity');
    assert.equal(first?.traceparent, TRACEPARENT);
    assert.equal(first?.traceId, TRACEPARENT.split('-')[1]);
    assert.deepEqual(first?.destination.service, { namespace: 'shop', name: 'web', port: 80 });
    assert.equal(first?.destination.endpoint?.kind === 'pod' && first.destination.endpoint.pod.name, 'web-1');
    assert.equal(first?.destination.endpoint?.port, h1Port);
    assert.deepEqual(first?.authorization, { allowed: true, reason: 'no policy applies' });
    assert.ok((first?.durationMs ?? -1) >= 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(Buffer.concat(podReads).toString('latin1'), sent, 'byte for byte what the source sent');
  });

  it('HTTP/1.1 with an HTTP policy: a denied request is recorded as the 403 answered here, the allowed one as the pod answered', async () => {
    configure(DENY_ADMIN);
    next = { port: h1Port, protocol: 'h1' };
    await raw('GET /admin/x HTTP/1.1\r\nhost: web\r\n\r\nGET /ok HTTP/1.1\r\nhost: web\r\n\r\n', /pod saw GET \/ok/);
    await recordsAtLeast(2);
    const [denied, allowed] = records;
    assert.equal(denied?.status, 403);
    assert.equal(denied?.responseBytes, 'RBAC: access denied'.length);
    assert.equal(denied?.responseFlags, '-', 'a policy denial is told in authorization, as at the source');
    assert.equal(denied?.authorization?.allowed, false);
    assert.equal(denied?.authorization?.policy, 'shop/deny-admin');
    assert.equal(allowed?.status, 200);
    assert.equal(allowed?.authorization?.allowed, true);
  });

  it('HTTP/1.1: the pod closing mid-answer is recorded as UR with the status it had sent', async () => {
    next = { port: h1Port, protocol: 'h1' };
    await raw('GET /cut HTTP/1.1\r\nhost: web\r\n\r\n', /$^/);
    await recordsAtLeast(1);
    assert.deepEqual(records.map((r) => [r.status, r.responseBytes, r.responseFlags]), [[200, 10, 'UR']]);
  });

  it('HTTP/2 and gRPC: one record per stream, gRPC status from trailers or a trailers-only head', async () => {
    configure(DENY_ADMIN);
    next = { port: h2Port, protocol: 'h2' };
    const session = http2.connect(`http://127.0.0.1:${frontPort}`);
    const call = (headers: http2.OutgoingHttpHeaders, body?: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const req = session.request({ ':authority': 'web.shop:9090', ...headers }, { endStream: !body });
        let status = 0;
        req.on('response', (h) => (status = Number(h[':status'])));
        req.resume();
        req.on('end', () => resolve(status));
        req.on('error', reject);
        if (body) req.end(body);
      });
    const grpc = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };
    const frame = Buffer.from([0, 0, 0, 0, 2, 8, 1]);
    assert.equal(await call({ ':path': '/plain' }), 200);
    assert.equal(await call({ ':path': '/admin' }), 403);
    await Promise.all([
      call({ ...grpc, ':path': '/pkg.Echo/Get' }, frame),
      call({ ...grpc, ':path': '/pkg.Echo/Fail' }, frame),
      call({ ...grpc, ':path': '/pkg.Echo/Missing' }, frame),
      call({ ...grpc, ':path': '/pkg.Admin/Drop' }, frame),
    ]);
    session.close();
    await recordsAtLeast(6);
    const byPath = new Map(records.map((r) => [r.path, r]));
    assert.equal(records.length, 6);
    assert.deepEqual(
      ['/plain', '/admin', '/pkg.Echo/Get', '/pkg.Echo/Fail', '/pkg.Echo/Missing', '/pkg.Admin/Drop'].map((p) => {
        const r = byPath.get(p);
        return [p, r?.protocol, r?.httpVersion, r?.status, r?.grpcStatus, r?.authorization?.allowed, r?.responseFlags];
      }),
      [
        ['/plain', 'http', '2', 200, undefined, true, '-'],
        ['/admin', 'http', '2', 403, undefined, false, '-'],
        ['/pkg.Echo/Get', 'grpc', '2', 200, 0, true, '-'],
        ['/pkg.Echo/Fail', 'grpc', '2', 200, 13, true, '-'],
        ['/pkg.Echo/Missing', 'grpc', '2', 200, 5, true, '-'],
        ['/pkg.Admin/Drop', 'grpc', '2', 200, 7, false, '-'],
      ],
    );
    const get = byPath.get('/pkg.Echo/Get');
    assert.equal(get?.requestBytes, frame.length);
    assert.equal(get?.responseBytes, frame.length);
    assert.equal(get?.authority, 'web.shop:9090');
    assert.deepEqual(get?.destination.service, { namespace: 'shop', name: 'web', port: 9090 });
    assert.equal(byPath.get('/plain')?.responseBytes, 'pod saw /plain'.length);
  });

  it('same node: the source pod handed over by the outbound path, security node_local', async () => {
    const index0 = index;
    next = { port: h1Port, protocol: 'h1', source: { principal: CLIENT, namespace: 'shop', ip: '127.0.0.3', pod: index0.state.pods.get('shop/client')! } };
    await raw('GET /local HTTP/1.1\r\nhost: web\r\n\r\n', /pod saw GET \/local/);
    await recordsAtLeast(1);
    assert.equal(records[0]?.security, 'node_local');
    assert.equal(records[0]?.source.pod?.name, 'client');
    next = { port: 0 };
  });

  it('a connection the source did not declare HTTP stays a byte relay: no filter, no record', async () => {
    configure(ONLY_PORT_1);
    const r = await inbound.open({ source: { principal: CLIENT, ip: '127.0.0.3' }, target: { ip: '127.0.0.2', port: h1Port } });
    assert.ok('stream' in r);
    assert.equal(r.stream, r.podSocket);
    r.stream.destroy();
    assert.deepEqual(records, []);
  });
});
