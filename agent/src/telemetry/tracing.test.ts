import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { HeaderMap } from '../http/headers.js';
import { memoryLogger } from '../testing/mesh.js';
import type { RequestRecord } from './request-record.js';
import { Tracing } from './tracing.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const SERVICE = { namespace: 'shop', name: 'web', port: 80 };
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

function tracer(sampling = 1) {
  const exporter = new InMemorySpanExporter();
  const tracing = new Tracing({ endpoint: 'http://collector.invalid:4318/v1/traces', sampling }, { node: 'n1', log: memoryLogger().log, processor: new SimpleSpanProcessor(exporter) });
  return { tracing, spans: () => exporter.getFinishedSpans() };
}

function record(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    reporter: 'source',
    startMs: 1_700_000_000_000,
    durationMs: 12.5,
    protocol: 'http',
    httpVersion: '1.1',
    method: 'GET',
    authority: 'web.shop',
    path: '/cart?id=7',
    status: 200,
    responseFlags: '-',
    requestBytes: 0,
    responseBytes: 42,
    retries: 0,
    requestId: 'req-1',
    route: 'HTTPRoute shop/web',
    source: { ip: '10.244.1.5' },
    destination: { service: SERVICE },
    security: 'mutual_tls',
    ...over,
  };
}

const traceparentOf = (headers: HeaderMap) => {
  const m = TRACEPARENT.exec(String(headers.traceparent));
  assert.ok(m, `traceparent ${String(headers.traceparent)}`);
  return { traceId: m[1] as string, spanId: m[2] as string, flags: m[3] as string };
};

describe('source spans and propagation', () => {
  it('W3C in: a CLIENT child of the caller, its context sent upstream with the same trace id and tracestate', () => {
    const { tracing, spans } = tracer();
    const headers: HeaderMap = { traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'vendor=x' };
    const span = tracing.startClient(headers, SERVICE, 'GET');
    const out = traceparentOf(headers);
    assert.equal(out.traceId, TRACE);
    assert.notEqual(out.spanId, PARENT);
    assert.equal(out.flags, '01');
    assert.equal(headers.tracestate, 'vendor=x');
    assert.equal(headers.b3, undefined, 'no B3 added for a W3C client');
    assert.deepEqual([span.traceId, span.traceparent], [TRACE, headers.traceparent]);
    span.end(record());
    const [s] = spans();
    assert.ok(s);
    assert.equal(s.kind, SpanKind.CLIENT);
    assert.equal(s.spanContext().spanId, out.spanId, 'the upstream is the child of the proxy span');
    assert.equal(s.parentSpanContext?.spanId, PARENT);
  });

  it('B3 in (multi or single): traceparent out with the same trace id, and B3 again in the form the client used', () => {
    const { tracing } = tracer();
    const multi: HeaderMap = { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-parentspanid': 'aaaaaaaaaaaaaaaa', 'x-b3-sampled': '1' };
    tracing.startClient(multi, SERVICE, 'GET');
    const w3c = traceparentOf(multi);
    assert.deepEqual([w3c.traceId, w3c.flags], [TRACE, '01']);
    assert.deepEqual([multi['x-b3-traceid'], multi['x-b3-spanid'], multi['x-b3-sampled']], [TRACE, w3c.spanId, '1']);
    assert.equal(multi['x-b3-parentspanid'], undefined, "the client's parent id does not survive");

    const single: HeaderMap = { b3: `${TRACE}-${PARENT}-1` };
    tracing.startClient(single, SERVICE, 'GET');
    const fromSingle = traceparentOf(single);
    assert.equal(fromSingle.traceId, TRACE);
    assert.equal(single.b3, `${TRACE}-${fromSingle.spanId}-1`);
  });

  it('no trace headers: a new root trace, sampled by the ratio', () => {
    const on = tracer(1);
    const headers: HeaderMap = {};
    on.tracing.startClient(headers, SERVICE, 'GET').end(record());
    assert.equal(traceparentOf(headers).flags, '01');
    const [root] = on.spans();
    assert.equal(root?.parentSpanContext, undefined);
    assert.equal(root?.spanContext().traceId, traceparentOf(headers).traceId);

    const off = tracer(0);
    const unsampled: HeaderMap = {};
    const span = off.tracing.startClient(unsampled, SERVICE, 'GET');
    span.end(record());
    assert.equal(traceparentOf(unsampled).flags, '00', 'the decision travels with the request');
    assert.equal(span.traceId, traceparentOf(unsampled).traceId, 'the trace id is still known for the access log');
    assert.deepEqual(off.spans(), []);
  });

  it("a caller's decision not to sample is followed whatever the ratio", () => {
    const { tracing, spans } = tracer(1);
    const headers: HeaderMap = { traceparent: `00-${TRACE}-${PARENT}-00` };
    tracing.startClient(headers, SERVICE, 'GET').end(record());
    assert.deepEqual([traceparentOf(headers).traceId, traceparentOf(headers).flags], [TRACE, '00']);
    assert.deepEqual(spans(), []);
  });

  it("ends with the record: Istio's operation name and the HTTP attributes", () => {
    const { tracing, spans } = tracer();
    const endpoint = { ip: '10.244.2.7', port: 8080, nodeName: 'n2' } as NonNullable<RequestRecord['destination']['endpoint']>;
    tracing.startClient({}, SERVICE, 'GET').end(record({ status: 503, responseFlags: 'URX', retries: 2, destination: { service: SERVICE, endpoint } }));
    const [s] = spans();
    assert.ok(s);
    assert.equal(s.name, 'web.shop.svc.cluster.local:80/*');
    assert.deepEqual(s.resource.attributes['service.name'], 'nodemesh');
    assert.deepEqual(s.resource.attributes['k8s.node.name'], 'n1');
    assert.deepEqual(s.attributes, {
      'http.request.method': 'GET',
      'url.scheme': 'http',
      'url.path': '/cart',
      'url.query': 'id=7',
      'server.address': 'web.shop',
      'server.port': 80,
      'network.protocol.name': 'http',
      'network.protocol.version': '1.1',
      'http.request.body.size': 0,
      'http.response.body.size': 42,
      'http.response.status_code': 503,
      'network.peer.address': '10.244.2.7',
      'network.peer.port': 8080,
      'nodemesh.response_flags': 'URX',
      'nodemesh.route': 'HTTPRoute shop/web',
      'nodemesh.retries': 2,
      'nodemesh.request_id': 'req-1',
      'error.type': '503',
    });
    assert.equal(s.status.code, SpanStatusCode.ERROR);
  });

  it('gRPC: rpc.system and the grpc status; a client gone before the answer is an error', () => {
    const { tracing, spans } = tracer();
    tracing.startClient({}, SERVICE, 'POST').end(record({ protocol: 'grpc', httpVersion: '2', method: 'POST', path: '/pkg.Echo/Unary', status: 200, grpcStatus: 5 }));
    tracing.startClient({}, SERVICE, 'GET').end(record({ status: 0, responseFlags: 'DC' }));
    const [grpc, gone] = spans();
    assert.deepEqual(
      [grpc?.attributes['rpc.system'], grpc?.attributes['rpc.grpc.status_code'], grpc?.attributes['network.protocol.version'], grpc?.attributes['error.type']],
      ['grpc', 5, '2', '5'],
    );
    assert.equal(gone?.attributes['http.response.status_code'], undefined);
    assert.deepEqual([gone?.attributes['error.type'], gone?.status.code], ['DC', SpanStatusCode.ERROR]);
  });
});

describe('destination spans from request records', () => {
  it("a destination record with the received traceparent becomes a SERVER child with the record's timing", () => {
    const { tracing, spans } = tracer();
    const r = record({ reporter: 'destination', traceparent: `00-${TRACE}-${PARENT}-01`, status: 404 });
    tracing.request(r);
    const [s] = spans();
    assert.ok(s);
    assert.equal(s.kind, SpanKind.SERVER);
    assert.equal(s.name, 'web.shop.svc.cluster.local:80/*', 'named as the source span is');
    assert.deepEqual([s.spanContext().traceId, s.parentSpanContext?.spanId], [TRACE, PARENT]);
    const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;
    assert.ok(Math.abs(ms(s.startTime) - r.startMs) < 0.01, `start ${ms(s.startTime)}`);
    assert.ok(Math.abs(ms(s.duration) - r.durationMs) < 0.01, `duration ${ms(s.duration)}`);
    assert.deepEqual([s.attributes['client.address'], s.attributes['http.response.status_code']], ['10.244.1.5', 404]);
    assert.equal(s.status.code, SpanStatusCode.UNSET, 'a 404 is not a server error');
  });

  it('source records, records without a traceparent and unsampled ones make no span here', () => {
    const { tracing, spans } = tracer();
    tracing.request(record({ traceparent: `00-${TRACE}-${PARENT}-01` }));
    tracing.request(record({ reporter: 'destination' }));
    tracing.request(record({ reporter: 'destination', traceparent: 'garbage' }));
    tracing.request(record({ reporter: 'destination', traceparent: `00-${TRACE}-${PARENT}-00` }));
    assert.deepEqual(spans(), []);
  });
});
