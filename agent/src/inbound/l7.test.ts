import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import type { MeshIndex } from '../state/mesh-index.js';
import { indexFromYaml, memoryLogger, nodeAndShop } from '../testing/mesh.js';
import { Inbound } from './inbound.js';
import { relay } from '../transport/relay.js';
import type { AuthzDecision } from '../policy/index.js';

// Loopback stands in for the pod network: pod web-1 is 127.0.0.2, the node 127.0.0.1. A front
// listener hands each accepted socket to Inbound.open and relays it with the result, as the
// HBONE server and the same-node outbound path do.
const CLIENT = 'cluster.local/ns/shop/sa/client';
const POD_DATE = 'Thu, 01 Jan 1970 00:00:00 GMT';
const topology = `
${nodeAndShop('n1', '127.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.2 }
`;
const policy = (name: string, spec: string) =>
  `---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;
const ALLOW_PUBLIC = policy('allow-public', `{ selector: { matchLabels: { app: web } }, rules: [{ to: [{ operation: { methods: [GET], paths: ['/public*'] } }] }, { to: [{ operation: { methods: [POST], paths: ['/upload'] } }] }, { to: [{ operation: { paths: ['/pkg.Public/*', '/ws'] } }] }] }`);
const DENY_DEBUG = policy('deny-debug', `{ action: DENY, rules: [{ when: [{ key: 'request.headers[x-debug]', values: ['*'] }] }] }`);
const DENY_ADMIN = policy('deny-admin', `{ action: DENY, rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] }`);

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe('inbound L7: AuthorizationPolicy HTTP fields enforced per request', () => {
  let index: MeshIndex;
  const { log, lines } = memoryLogger();
  const inbound = new Inbound({ index: () => index, connectTimeoutMs: 1000, detectTimeoutMs: 300, log });
  const seen: Seen[] = [];
  const denials: AuthzDecision[] = [];
  let h1Pod: http.Server;
  let h2Pod: http2.Http2Server;
  let front: net.Server;
  let h1Port = 0;
  let h2Port = 0;
  /** The pod port the next connection goes to. */
  let podPort = 0;
  let frontPort = 0;
  /** The pod connections opened through the filter: what reached the pod is their bytesWritten. */
  const podSockets: net.Socket[] = [];
  const podBytes = () => podSockets.reduce((n, s) => n + s.bytesWritten, 0);
  const configure = (...policies: string[]) => (index = indexFromYaml(topology + policies.join(''), 'n1'));

  before(async () => {
    h1Pod = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        res.setHeader('content-type', 'text/plain');
        res.end(`pod saw ${req.method} ${req.url} ${body.length}`);
      });
    });
    h1Pod.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n');
      socket.pipe(socket);
    });
    h2Pod = http2.createServer();
    h2Pod.on('stream', (stream, headers) => {
      seen.push({ method: String(headers[':method']), url: String(headers[':path']), headers: headers as http.IncomingHttpHeaders, body: '' });
      if (String(headers['content-type']).startsWith('application/grpc')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
        return;
      }
      stream.respond({ ':status': 200, date: POD_DATE });
      stream.end(`pod saw ${String(headers[':path'])}`);
    });
    for (const server of [h1Pod, h2Pod]) {
      server.listen(0, '127.0.0.2');
      await once(server, 'listening');
    }
    h1Port = (h1Pod.address() as net.AddressInfo).port;
    h2Port = (h2Pod.address() as net.AddressInfo).port;

    front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, async (socket) => {
      const r = await inbound.open({
        source: { principal: CLIENT, namespace: 'shop', ip: '127.0.0.1' },
        target: { ip: '127.0.0.2', port: podPort },
        onDenied: (d) => denials.push(d),
      });
      if ('stream' in r) {
        podSockets.push(r.podSocket);
        await relay(socket, r.stream);
      }
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
    podPort = h1Port;
    seen.length = 0;
    denials.length = 0;
    lines.length = 0;
    podSockets.length = 0;
  });

  /** Raw HTTP/1.1 on one connection: sends `text`, returns all bytes until the connection ends or `until` matches. */
  const raw = async (text: string | Array<string | Buffer>, until?: RegExp): Promise<string> => {
    const s = net.connect(frontPort, '127.0.0.1');
    await once(s, 'connect');
    let data = '';
    const done = new Promise<string>((resolve) => {
      s.on('data', (c: Buffer) => {
        data += c.toString();
        if (until?.test(data)) {
          s.destroy();
          resolve(data);
        }
      });
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
    });
    for (const part of typeof text === 'string' ? [text] : text) {
      s.write(part);
      await new Promise((r) => setTimeout(r, 30));
    }
    if (!until) s.end();
    return done;
  };
  const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

  it('HTTP/1.1: an allowed request reaches the pod; a denied one gets 403 "RBAC: access denied" and the pod sees nothing', async () => {
    configure(ALLOW_PUBLIC);
    const ok = await raw('GET /public/x HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n');
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.match(ok, /pod saw GET \/public\/x 0/);
    seen.length = 0;
    podSockets.length = 0;
    const denied = await raw('GET /private HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n');
    assert.match(denied, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(denied, /content-type: text\/plain\r\n/);
    assert.ok(denied.endsWith('\r\n\r\nRBAC: access denied'), denied);
    assert.deepEqual(seen, []);
    assert.equal(podBytes(), 0, 'no byte of the denied request reached the pod');
    assert.equal(denials.at(-1)?.allowed, false);
    const line = lines.find((l) => l.msg === 'inbound: request denied');
    assert.equal(line?.method, 'GET');
    assert.equal(line?.path, '/private');
    assert.equal(line?.source, CLIENT);
    assert.match(String(line?.reason), /no ALLOW policy matched \(shop\/allow-public\)/);
  });

  it('keep-alive and pipelining: allowed and denied requests on one connection are answered in order', async () => {
    configure(ALLOW_PUBLIC, DENY_DEBUG);
    const out = await raw(
      'GET /public/1 HTTP/1.1\r\nhost: web\r\n\r\n' +
        'POST /public/2 HTTP/1.1\r\nhost: web\r\ncontent-length: 5\r\n\r\nhello' +
        'GET /public/3 HTTP/1.1\r\nhost: web\r\nx-debug: 1\r\n\r\n' +
        'GET /public/4 HTTP/1.1\r\nhost: web\r\n\r\n' +
        'HEAD /nope HTTP/1.1\r\nhost: web\r\n\r\n',
      /RBAC: access denied[\s\S]*RBAC: access denied[\s\S]*pod saw GET \/public\/4[\s\S]*HTTP\/1\.1 403/,
    );
    assert.deepEqual(statuses(out), [200, 403, 403, 200, 403]);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/public/1', '/public/4'],
    );
    assert.equal(denials.at(-1)?.reason, 'no ALLOW policy matched (shop/allow-public)');
    assert.ok(denials.some((d) => d.policy === 'shop/deny-debug'));
  });

  it('a policy change applies to the next request on an open connection', async () => {
    configure(ALLOW_PUBLIC);
    const s = net.connect(frontPort, '127.0.0.1');
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString()));
    const until = async (n: number) => {
      while (statuses(data).length < n) await new Promise((r) => setTimeout(r, 10));
    };
    s.write('GET /public/a HTTP/1.1\r\nhost: web\r\n\r\n');
    await until(1);
    configure(ALLOW_PUBLIC, DENY_ADMIN.replace('/admin*', '/public/b'));
    s.write('GET /public/b HTTP/1.1\r\nhost: web\r\n\r\n');
    await until(2);
    s.destroy();
    assert.deepEqual(statuses(data), [200, 403]);
  });

  it('chunked POST: the allowed body reaches the pod whole; a denied body never does, and the connection goes on', async () => {
    configure(ALLOW_PUBLIC);
    const chunked = (path: string) => [`POST ${path} HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n`, '6\r\n world\r\n0\r\n\r\n'];
    const out = await raw([...chunked('/secret'), ...chunked('/upload')], /pod saw POST \/upload 11/);
    assert.deepEqual(statuses(out), [403, 200]);
    assert.deepEqual(
      seen.map((s) => [s.url, s.body]),
      [['/upload', 'hello world']],
    );
  });

  it('Expect: 100-continue: allowed gets the pod\'s 100, denied gets 403 at once and the connection closes', async () => {
    configure(ALLOW_PUBLIC);
    const allowed = await raw(['POST /upload HTTP/1.1\r\nhost: web\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n', 'abc'], /pod saw POST \/upload 3/);
    assert.deepEqual(statuses(allowed), [100, 200]);
    const denied = await raw('POST /secret HTTP/1.1\r\nhost: web\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n');
    assert.deepEqual(statuses(denied), [403]);
    assert.match(denied, /connection: close/);
  });

  it('paths are normalized as Istio BASE before matching; the pod receives the original path', async () => {
    configure(DENY_ADMIN);
    const get = async (path: string) => statuses(await raw(`GET ${path} HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n`))[0];
    for (const path of ['/admin', '/./admin', '/a/../admin', '/%61dmin/x', '/public/%2e%2E/admin', '/admin\\..\\admin']) {
      assert.equal(await get(path), 403, path);
    }
    assert.equal(await get('/%00admin'), 400);
    // BASE does not merge slashes (Istio's MERGE_SLASHES does): "//admin" is not "/admin*".
    assert.equal(await get('//admin'), 200);
    assert.equal(await get('/public/./a/../b?x=/admin'), 200);
    assert.deepEqual(
      seen.map((s) => s.url),
      ['//admin', '/public/./a/../b?x=/admin'],
    );
  });

  it('malformed or ambiguous requests get 400 and nothing reaches the pod', async () => {
    configure(ALLOW_PUBLIC);
    for (const req of [
      'POST /upload HTTP/1.1\r\nhost: web\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
      'get /public/x HTTP/1.1\r\nhost: web\r\n\r\n',
      'GET /public/x HTTP/1.1\r\nhost : web\r\n\r\n',
      'GET /public/\0x HTTP/1.1\r\nhost: web\r\n\r\n',
      'GET /public/x HTTP/1.1\r\nhost: web\r\nx-a: b\0c\r\n\r\n',
      'GET /public/x HTTP/1.1\r\nhost: web\r\nx-a: b\x01c\r\n\r\n',
    ]) {
      assert.deepEqual(statuses(await raw(req)), [400], JSON.stringify(req));
    }
    assert.equal(podBytes(), 0);
  });

  it('a chunked body that breaks midway: 400, the pod connection reset, the connection closed', async () => {
    configure(ALLOW_PUBLIC);
    // The source keeps its side open: the answer and the close must come from the filter.
    const data = await raw(['POST /upload HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n', 'zz\r\n'], /closed-by-test-never/);
    assert.deepEqual(statuses(data), [400]);
    assert.equal(seen.length, 0, 'the pod served nothing');
  });

  it('Upgrade: the request is authorized, then the connection is passed through as bytes', async () => {
    configure(ALLOW_PUBLIC);
    const out = await raw(['GET /ws HTTP/1.1\r\nhost: web\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n', 'not http at all'], /not http at all/);
    assert.match(out, /^HTTP\/1\.1 101 /);
    const denied = await raw('GET /other HTTP/1.1\r\nhost: web\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n', /RBAC/);
    assert.match(denied, /^HTTP\/1\.1 403 /);
  });

  it('not HTTP on a port whose policies need HTTP: decided at L4, so an ALLOW on HTTP fields cannot admit it', async () => {
    configure(ALLOW_PUBLIC);
    const s = net.connect(frontPort, '127.0.0.1');
    s.write(Buffer.from([0x16, 0x03, 0x01, 0x00]));
    const [err] = (await once(s, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(podBytes(), 0);
    assert.ok(lines.some((l) => l.msg === 'inbound: connection denied (not HTTP)'));
  });

  it('a port no HTTP rule can apply to stays a byte passthrough', async () => {
    configure(DENY_ADMIN.replace("paths: ['/admin*']", "paths: ['/admin*'], ports: ['1']"));
    const r = await inbound.open({ source: { principal: CLIENT, ip: '127.0.0.1' }, target: { ip: '127.0.0.2', port: h1Port } });
    assert.ok('stream' in r);
    assert.equal(r.stream, r.podSocket);
    r.stream.destroy();
  });

  it('HTTP/2 (h2c): allowed streams reach the pod, denied ones get 403; gRPC gets grpc-status 7', async () => {
    configure(ALLOW_PUBLIC, DENY_DEBUG);
    podPort = h2Port;
    const session = http2.connect(`http://127.0.0.1:${frontPort}`);
    after(() => session.destroy());
    const call = (headers: http2.OutgoingHttpHeaders, body?: Buffer) =>
      new Promise<{ headers: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const req = session.request(headers, { endStream: !body });
        let out = '';
        let head: http2.IncomingHttpHeaders = {};
        let trailers: http2.IncomingHttpHeaders | undefined;
        req.on('response', (h) => (head = h));
        req.on('trailers', (t) => (trailers = t));
        req.on('data', (c: Buffer) => (out += c.toString()));
        req.on('end', () => resolve({ headers: head, body: out, ...(trailers ? { trailers } : {}) }));
        req.on('error', reject);
        if (body) req.end(body);
      });
    const ok = await call({ ':path': '/public/h2' });
    assert.equal(ok.headers[':status'], 200);
    assert.equal(ok.body, 'pod saw /public/h2');
    assert.equal(ok.headers.date, POD_DATE, 'the pod\'s headers, none replaced on the way');
    const denied = await call({ ':path': '/private' });
    assert.equal(denied.headers[':status'], 403);
    assert.equal(denied.body, 'RBAC: access denied');
    assert.equal(denied.headers['content-type'], 'text/plain');
    const debug = await call({ ':path': '/public/h2', 'x-debug': 'yes' });
    assert.equal(debug.headers[':status'], 403);

    const grpc = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' };
    const frame = Buffer.from([0, 0, 0, 0, 0]);
    const deniedRpc = await call({ ...grpc, ':path': '/pkg.Admin/Drop' }, frame);
    assert.equal(deniedRpc.headers[':status'], 200);
    assert.equal(deniedRpc.headers['grpc-status'], '7');
    assert.equal(deniedRpc.headers['grpc-message'], 'RBAC: access denied');
    const okRpc = await call({ ...grpc, ':path': '/pkg.Public/Get' }, frame);
    assert.equal(okRpc.headers[':status'], 200);
    assert.equal(okRpc.trailers?.['grpc-status'], '0', 'trailers carried from the pod');
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/public/h2', '/pkg.Public/Get'],
    );
    assert.equal(seen[1]?.headers.te, 'trailers');
  });

  it('an open byte relay that a new policy denies is reset and logged; one still allowed goes on', async () => {
    configure();
    const s = net.connect(frontPort, '127.0.0.1');
    await once(s, 'connect');
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString()));
    const closed = new Promise<string>((resolve) => {
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      s.on('close', () => resolve('closed'));
    });
    const get = async (path: string) => {
      const before = data.length;
      s.write(`GET ${path} HTTP/1.1\r\nhost: web\r\n\r\n`);
      while (!/pod saw GET/.test(data.slice(before))) await new Promise((r) => setTimeout(r, 10));
    };
    await get('/one');
    // A policy that still admits the connection changes nothing.
    configure(policy('allow-client', `{ rules: [{ from: [{ source: { principals: ['${CLIENT}'] } }] }] }`));
    inbound.recheck();
    await get('/two');
    configure(policy('deny-client', `{ action: DENY, rules: [{ from: [{ source: { principals: ['${CLIENT}'] } }] }] }`));
    inbound.recheck();
    assert.equal(await closed, 'ECONNRESET', 'the source sees a reset, not a clean end');
    assert.equal(denials[0]?.policy, 'shop/deny-client');
    assert.ok(lines.some((l) => l.msg === 'inbound: open connection closed, the policy now denies it' && l.policy === 'shop/deny-client'));
    assert.deepEqual(seen.map((x) => x.url), ['/one', '/two']);
  });

  it('HTTP/2: a source that breaks the protocol and then ends has its connection closed, the pod\'s too', async () => {
    configure(ALLOW_PUBLIC);
    podPort = h2Port;
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const settings = Buffer.from('000000040000000000', 'hex');
    // DATA on a stream never opened: nghttp2 answers GOAWAY (PROTOCOL_ERROR) and reads no more.
    const dataOnIdle = Buffer.from('000001000000000007' + '61', 'hex');
    const answer = await Promise.race([
      raw([Buffer.concat([preface, settings]), dataOnIdle]),
      new Promise<string>((resolve) => setTimeout(() => resolve('still open after 3 s'), 3000)),
    ]);
    assert.notEqual(answer, 'still open after 3 s');
    assert.match(Buffer.from(answer, 'latin1').toString('hex'), /0000\w{2}07(00){9}00000001/, 'a GOAWAY with PROTOCOL_ERROR was sent');
    assert.equal(podSockets.length, 1);
    assert.ok(podSockets[0]!.destroyed, 'the pod connection is closed');
    assert.deepEqual(seen, []);
  });
});
