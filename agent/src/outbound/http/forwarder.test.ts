import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import type { ConnectionPoolSettings } from '../../state/model.js';
import { indexFromYaml, nodeAndShop } from '../../testing/mesh.js';
import { Cluster } from '../cluster.js';
import { forward, type ForwardPlan, type ForwardResult, type LocalReply, type RetryPolicy } from './forwarder.js';
import { GrpcCode } from '../../http/grpc-status.js';
import { RequestBody } from './request-body.js';
import { UpstreamPool, type Dial } from './upstream-pool.js';
import { UpstreamError, type UpstreamRequest, type UpstreamResponse } from './upstream.js';

// Two endpoints of shop/web (pod IPs 10.1.0.2 and 10.1.0.3, port 8080) that the test's
// connect() maps to loopback servers on ephemeral ports.
const YAML = `${nodeAndShop('n1', '10.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 10.1.0.3 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: v1
kind: Service
metadata: { name: nowhere, namespace: shop }
spec: { clusterIP: 10.96.0.11, selector: { app: none }, ports: [{ port: 80, targetPort: 8080 }] }`;
const POD_OF: Record<string, string> = { '10.1.0.2': 'web-1', '10.1.0.3': 'web-2' };

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function cluster(service = 'web', connectionPool: ConnectionPoolSettings = {}): Cluster {
  const dest = indexFromYaml(YAML, 'n1').serviceDestination('shop', service, 80);
  assert.ok(dest);
  const c = new Cluster(`shop/${service}:80`);
  c.update(dest, { connectionPool });
  cleanups.push(() => c.close());
  return c;
}

type Handler = (pod: string, req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * One HTTP/1.1 server per pod; `hits` lists the pods in the order requests reached them.
 * `failDial(n)` makes the next n dials fail as connect failures.
 */
async function backends(handler: Handler): Promise<{ hits: string[]; dials(): number; failDial(n: number): void; connect: ForwardPlan['connect'] }> {
  const hits: string[] = [];
  const ports = new Map<string, number>();
  for (const [ip, pod] of Object.entries(POD_OF)) {
    const server = http.createServer((req, res) => {
      hits.push(pod);
      handler(pod, req, res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    ports.set(ip, (server.address() as net.AddressInfo).port);
    cleanups.push(async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    });
  }
  let dials = 0;
  let failing = 0;
  const connect = (endpoint: { ip: string; port: number }): { key: string; dial: Dial } => ({
    key: `client|${endpoint.ip}:${endpoint.port}`,
    dial: () =>
      new Promise((resolve, reject) => {
        dials += 1;
        if (failing > 0) {
          failing -= 1;
          return reject(new UpstreamError('connect', `connection refused by ${POD_OF[endpoint.ip]}`, 'UF'));
        }
        const socket = net.connect(ports.get(endpoint.ip) as number, '127.0.0.1');
        socket.once('error', (err) => reject(new UpstreamError('connect', err.message, 'UF')));
        socket.once('connect', () => resolve(socket));
      }),
  });
  return { hits, dials: () => dials, failDial: (n) => (failing = n), connect };
}

function newPool(): UpstreamPool {
  const pool = new UpstreamPool();
  cleanups.push(() => pool.close());
  return pool;
}

const RETRY: RetryPolicy = { retries: 2, codes: new Set(), backoffBaseMs: 1, asked: false };

function request(method = 'GET', body = ''): UpstreamRequest {
  return { method, path: '/', authority: 'web.shop', headers: {}, body: RequestBody.of(Buffer.from(body)) };
}

function plan(c: Cluster, connect: ForwardPlan['connect'], over: Partial<ForwardPlan> = {}): ForwardPlan {
  return { cluster: c, protocol: 'h1', request: request(), retry: RETRY, connect, signal: new AbortController().signal, ...over };
}

async function text(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

/** The upstream answer, read whole and released. */
async function answered(result: ForwardResult): Promise<{ status: number; body: string; attempts: number; pod: string }> {
  if ('local' in result) assert.fail(`expected an upstream response, got ${JSON.stringify(result.local)}`);
  const body = await text(result.response.body);
  result.done();
  return { status: result.response.status, body, attempts: result.attempts, pod: POD_OF[result.endpoint.ip] as string };
}

function local(result: ForwardResult): LocalReply & { attempts: number } {
  if ('response' in result) assert.fail(`expected a local reply, got upstream status ${result.response.status}`);
  return { ...result.local, attempts: result.attempts };
}

/** Answers with the pod name; the first `failures` requests (over both pods) get `status`. */
function failingFirst(failures: number, status = 503): Handler {
  let n = 0;
  return (pod, req, res) => {
    n += 1;
    const fail = n <= failures;
    req.resume();
    req.on('end', () => {
      res.writeHead(fail ? status : 200);
      res.end(fail ? 'failed' : pod);
    });
  };
}

describe('forward', () => {
  it('retries a status the route lists, on the other endpoint', async () => {
    const b = await backends(failingFirst(1));
    const r = await answered(await forward(newPool(), plan(cluster(), b.connect, { retry: { ...RETRY, codes: new Set([503]) } })));
    assert.deepEqual([r.status, r.attempts], [200, 2]);
    assert.equal(b.hits.length, 2);
    assert.notEqual(b.hits[0], b.hits[1], 'the retry went to another endpoint');
    assert.equal(r.pod, b.hits[1]);
  });

  it('returns an unlisted status as the answer, without retrying', async () => {
    const b = await backends(failingFirst(1));
    const r = await answered(await forward(newPool(), plan(cluster(), b.connect)));
    assert.deepEqual([r.status, r.body, r.attempts], [503, 'failed', 1]);
    assert.equal(b.hits.length, 1);
  });

  it('retries a connect failure even for POST, replaying the body', async () => {
    const b = await backends((pod, req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => res.end(`${pod} got ${body}`));
    });
    b.failDial(1);
    const r = await answered(await forward(newPool(), plan(cluster(), b.connect, { request: request('POST', 'order=42') })));
    assert.equal(r.status, 200);
    assert.equal(r.attempts, 2);
    assert.equal(r.body, `${r.pod} got order=42`);
    assert.equal(b.dials(), 2);
  });

  it('answers 503 UF when every attempt fails to connect', async () => {
    const b = await backends(failingFirst(0));
    b.failDial(10);
    const reply = local(await forward(newPool(), plan(cluster(), b.connect)));
    assert.equal(reply.status, 503);
    assert.equal(reply.flag, 'UF');
    assert.equal(reply.attempts, 3, 'the first try and two retries');
    assert.match(reply.message, /reset reason: connection failure: connection refused by web-\d/);
  });

  describe('a reset after the request was sent', () => {
    /** The first request (over both pods) has its connection dropped, the rest are answered. */
    const resetFirst = (): Handler => {
      let n = 0;
      return (pod, req, res) => {
        n += 1;
        if (n === 1) return void req.socket.destroy();
        req.resume();
        req.on('end', () => res.end(pod));
      };
    };

    it('is not retried for POST: 503 UR', async () => {
      const b = await backends(resetFirst());
      const reply = local(await forward(newPool(), plan(cluster(), b.connect, { request: request('POST', 'x') })));
      assert.equal(reply.status, 503);
      assert.equal(reply.flag, 'UR');
      assert.match(reply.message, /reset reason: remote reset/);
      assert.equal(reply.attempts, 1);
      assert.equal(b.hits.length, 1);
    });

    it('is retried for POST when the route asked for retries', async () => {
      const b = await backends(resetFirst());
      const r = await answered(await forward(newPool(), plan(cluster(), b.connect, { request: request('POST', 'x'), retry: { ...RETRY, asked: true } })));
      assert.deepEqual([r.status, r.attempts], [200, 2]);
    });

    it('is retried for an idempotent method', async () => {
      const b = await backends(resetFirst());
      const r = await answered(await forward(newPool(), plan(cluster(), b.connect, { request: request('PUT', 'x') })));
      assert.deepEqual([r.status, r.attempts], [200, 2]);
    });
  });

  it('gives 504 UT with DEADLINE_EXCEEDED when the last try times out', async () => {
    const b = await backends(() => {});
    const started = performance.now();
    const reply = local(await forward(newPool(), plan(cluster(), b.connect, { perTryTimeoutMs: 50, retry: { ...RETRY, retries: 1 } })));
    assert.equal(reply.status, 504);
    assert.equal(reply.flag, 'UT');
    assert.equal(reply.grpcStatus, GrpcCode.DEADLINE_EXCEEDED);
    assert.equal(reply.message, 'upstream request timeout after 50 ms');
    assert.equal(reply.attempts, 2);
    assert.equal(b.hits.length, 2);
    assert.ok(performance.now() - started >= 95, 'each try had its 50 ms');
  });

  it('passes the upstream answer through when the retry budget refuses a retry (Envoy retry overflow)', async () => {
    const b = await backends(failingFirst(Infinity));
    const c = cluster('web', { maxRetries: 1 });
    const held = c.retry();
    assert.ok(held, 'another request holds the only retry');
    const refused = await answered(await forward(newPool(), plan(c, b.connect, { retry: { ...RETRY, codes: new Set([503]) } })));
    assert.equal(refused.status, 503);
    assert.equal(refused.attempts, 1);
    held();
    const r = await answered(await forward(newPool(), plan(c, b.connect, { retry: { ...RETRY, retries: 10, codes: new Set([503]) } })));
    assert.equal(r.status, 503, 'with the budget back, retries run until the policy gives up');
    assert.equal(r.attempts, 11);
  });

  it('answers 503 UO with x-envoy-overloaded on overflow, and done() gives the slot back', async () => {
    const b = await backends(failingFirst(0));
    const c = cluster('web', { http2MaxRequests: 1 });
    const pool = newPool();
    const busy = await c.admit('h2', new AbortController().signal);
    assert.ok('release' in busy);
    const reply = local(await forward(pool, plan(c, b.connect)));
    assert.equal(reply.status, 503);
    assert.equal(reply.flag, 'UO');
    assert.deepEqual(reply.headers, { 'x-envoy-overloaded': 'true' });
    assert.match(reply.message, /max requests \(1\) in flight to shop\/web:80/);
    assert.equal(reply.attempts, 0);
    assert.equal(b.dials(), 0, 'nothing was sent');
    busy.release();
    for (let i = 0; i < 3; i += 1) assert.equal((await answered(await forward(pool, plan(c, b.connect)))).status, 200);
  });

  it('answers 503 UH when the destination has no endpoint', async () => {
    const b = await backends(failingFirst(0));
    const reply = local(await forward(newPool(), plan(cluster('nowhere'), b.connect)));
    assert.deepEqual([reply.status, reply.flag, reply.message, reply.attempts], [503, 'UH', 'no healthy upstream for shop/nowhere:80', 0]);
  });

  it('keeps streaming the request body after the response head (gRPC bidi streaming)', { timeout: 5000 }, async () => {
    // An h2c echo server that answers the head at once, then echoes each message.
    const server = http2.createServer();
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.on('data', (c: Buffer) => stream.write(c));
      stream.on('end', () => stream.end());
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    cleanups.push(async () => {
      server.close();
      await once(server, 'close');
    });
    const connect = (): { key: string; dial: Dial } => ({ key: 'client|echo', dial: async () => net.connect(port, '127.0.0.1') });

    const source = new PassThrough();
    const req: UpstreamRequest = { method: 'POST', path: '/echo.Echo/Chat', authority: 'echo', headers: { 'content-type': 'application/grpc' }, body: new RequestBody(source, false) };
    const result = await forward(newPool(), plan(cluster(), connect, { protocol: 'h2', request: req }));
    assert.ok('response' in result);
    const response: UpstreamResponse = result.response;
    const next = () => once(response.body, 'data').then(([c]) => (c as Buffer).toString());
    source.write('ping-1');
    assert.equal(await next(), 'ping-1');
    source.write('ping-2');
    assert.equal(await next(), 'ping-2');
    source.end();
    await once(response.body, 'end');
    result.done();
  });
});
