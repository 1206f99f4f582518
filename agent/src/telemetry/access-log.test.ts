import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { indexFromYaml, nodeAndShop } from '../testing/mesh.js';
import { requestRecord } from '../testing/request-record.js';
import { AccessLog, parseAccessLogMode } from './access-log.js';
import type { ProxyFlow } from './flow-table.js';

const index = indexFromYaml(
  `apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 10.77.0.1 }] }
`,
  'n1',
);

const flow = (responseFlags: ProxyFlow['responseFlags']): ProxyFlow => ({
  direction: 'outbound',
  sourceIP: '10.244.1.2',
  sourcePort: 40000,
  dstIP: '10.96.0.14',
  dstPort: 80,
  startMs: 1000,
  endMs: 1250,
  bytesSent: 5,
  bytesReceived: 9,
  responseFlags,
  security: 'none',
});

const shop = indexFromYaml(
  `${nodeAndShop('n1', '10.77.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: client-1, namespace: shop, labels: { app: client } }
spec: { nodeName: n1, serviceAccountName: buyer }
status: { podIP: 10.244.1.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: shop, labels: { app: web } }
spec: { nodeName: n2, serviceAccountName: web }
status: { podIP: 10.244.2.2 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
`,
  'n1',
);
const toWeb = { service: 'shop/web', endpoint: 'shop/web-2' };

function logger(mode: string, random = () => 0.5, view = index) {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: new AccessLog(parseAccessLogMode(mode), { node: 'n1', index: () => view, trustDomain: 'cluster.local', destination, random }), lines };
}

it('writes one access line per closed connection with what an operator looks for', () => {
  const { log, lines } = logger('all');
  log.closed(flow('UH'));
  assert.equal(lines.length, 1);
  const l = lines[0] as Record<string, any>;
  assert.equal(l.type, 'access');
  assert.equal(l.node, 'n1');
  assert.deepEqual(l.src, { addr: '10.244.1.2:40000', workload: null, pod: null, namespace: null, identity: null });
  assert.deepEqual([l.dst.addr, l.responseFlags, l.bytesSent, l.bytesReceived, l.durationMs, l.protocol], ['10.96.0.14:80', 'UH', 5, 9, 250, 'tcp']);
});

it('off writes nothing; sampled thins successful connections but keeps every failure', () => {
  const off = logger('off');
  off.log.closed(flow('UF'));
  assert.equal(off.lines.length, 0);
  const sampled = logger('sampled:0.25', () => 0.5);
  sampled.log.closed(flow('-'));
  sampled.log.closed(flow('UF'));
  assert.deepEqual(sampled.lines.map((l) => l.responseFlags), ['UF']);
  const lucky = logger('sampled:0.25', () => 0.1);
  lucky.log.closed(flow('-'));
  assert.equal(lucky.lines.length, 1);
});

it('refuses a malformed --access-log value, naming the flag', () => {
  for (const bad of ['some', 'sampled:0', 'sampled:1.5', 'sampled:x']) {
    assert.throws(() => parseAccessLogMode(bad), /--access-log must be off, all or sampled:<ratio>/);
  }
});

it('writes one request line per HTTP request with both ends, route, outcome and decision', () => {
  const { log, lines } = logger('all', undefined, shop);
  log.request(
    requestRecord(shop, 'shop/client-1', toWeb, {
      protocol: 'grpc',
      httpVersion: '2',
      method: 'POST',
      path: '/echo.Echo/Say',
      grpcStatus: 0,
      requestBytes: 12,
      retries: 1,
      requestId: 'req-1',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      route: 'GRPCRoute shop/echo',
      authorization: { allowed: true, reason: 'allowed by shop/allow-buyer', policy: 'shop/allow-buyer' },
    }),
  );
  log.closed(flow('-'));
  assert.deepEqual(
    lines.map((l) => l.type),
    ['request', 'access'],
  );
  const { time, ...line } = lines[0] as Record<string, unknown>;
  assert.equal(typeof time, 'number');
  assert.deepEqual(line, {
    level: 30,
    node: 'n1',
    type: 'request',
    reporter: 'source',
    src: { addr: '10.244.1.2', workload: 'client-1', pod: 'client-1', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/buyer' },
    dst: { service: 'web.shop.svc.cluster.local', port: 80, workload: 'web-2', pod: 'web-2', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/web' },
    route: 'GRPCRoute shop/echo',
    endpoint: { addr: '10.244.2.2:8080', node: 'n2' },
    protocol: 'grpc',
    httpVersion: '2',
    method: 'POST',
    authority: 'web.shop',
    path: '/echo.Echo/Say',
    status: 200,
    grpcStatus: 0,
    responseFlags: '-',
    requestBytes: 12,
    responseBytes: 120,
    durationMs: 3.25,
    retries: 1,
    requestId: 'req-1',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    authorization: { decision: 'allow', reason: 'allowed by shop/allow-buyer', policy: 'shop/allow-buyer' },
    security: 'mutual_tls',
    msg: 'request',
  });
});

it('sampled thins successful requests but keeps every failed one; off writes none', () => {
  const outcomes = [
    { status: 200 },
    { status: 404 },
    { status: 503 },
    { status: 0, responseFlags: 'DC' },
    { status: 200, protocol: 'grpc', grpcStatus: 14 },
    { status: 403, authorization: { allowed: false, reason: 'denied by shop/deny-all' } },
  ] as const;
  const run = (mode: string, random: number) => {
    const { log, lines } = logger(mode, () => random, shop);
    for (const o of outcomes) log.request(requestRecord(shop, 'shop/client-1', toWeb, o));
    return lines.map((l) => `${l.status}${l.grpcStatus === null ? '' : `/${l.grpcStatus}`}`);
  };
  assert.deepEqual(run('sampled:0.25', 0.5), ['503', '0', '200/14', '403']);
  assert.deepEqual(run('sampled:0.25', 0.1), ['200', '404', '503', '0', '200/14', '403']);
  assert.deepEqual(run('off', 0), []);
});
