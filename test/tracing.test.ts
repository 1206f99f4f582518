// Tracing end to end on the netns testbed: a client pod on n1 calls a Service whose backend
// runs on n2, with both agents exporting to an OTLP/HTTP receiver on n1's address. The
// backend's echo shows the traceparent it received; the receiver shows the spans.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Testbed } from '../scripts/testbed/testbed.js';
import { AgentProcess } from '../scripts/testbed/agent.js';
import { serviceDoc, testbedDocs, writeConfig } from '../scripts/testbed/mesh-config.js';

const isRoot = process.getuid?.() === 0;
const VIP = '10.96.0.10';
const HTTP_PORT = 8080;
const OTLP_PORT = 4318;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;
/** OTLP's SPAN_KIND_CLIENT and SPAN_KIND_SERVER. */
const KIND_CLIENT = 3;
const KIND_SERVER = 2;

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
}

describe('tracing: W3C and B3 propagation through the mesh, spans exported over OTLP/HTTP', { skip: isRoot ? false : 'needs root: BPF, netns and cgroups' }, () => {
  let tb: Testbed;
  let spansFile: string;
  const agents = new Map<string, AgentProcess>();

  /** What the backend received, from its JSON echo. */
  const call = async (headers: string[] = []) => {
    const args = headers.flatMap((h) => ['-H', h]);
    const r = await tb.exec({ pod: 'client' }, ['curl', '-sS', '--max-time', '5', ...args, `http://${VIP}/hello?x=1`]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { pod: string; headers: Record<string, string> };
  };
  const received = (headers: Record<string, string>) => {
    const m = TRACEPARENT.exec(headers.traceparent ?? '');
    assert.ok(m, `the app received no valid traceparent: ${JSON.stringify(headers)}`);
    return { traceId: m[1] as string, spanId: m[2] as string, flags: m[3] as string };
  };
  const spans = (): ReceivedSpan[] =>
    existsSync(spansFile)
      ? readFileSync(spansFile, 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as ReceivedSpan)
      : [];
  /** The batch processor exports every 5 s: wait for the span the upstream was told of. */
  const spanOf = (spanId: string) =>
    (agents.get('n1') as AgentProcess).until(`span ${spanId} at the receiver`, async () => spans().find((s) => s.spanId === spanId), 15_000);

  before(async () => {
    tb = await Testbed.create({
      nodes: [
        { name: 'n1', pods: [{ name: 'client', namespace: 'shop', labels: { app: 'client' } }] },
        { name: 'n2', pods: [{ name: 'web-2', namespace: 'shop', labels: { app: 'web' } }] },
      ],
      namespaces: { shop: { 'nodemesh.io/mode': 'enabled' } },
    });
    await tb.startFixture('web-2', 'http-backend.mjs', ['--port', String(HTTP_PORT), '--name', 'web-2']);
    spansFile = path.join(tb.scratchDir, 'spans.jsonl');
    await tb.startNodeFixture('n1', 'otlp-receiver.mjs', ['--host', tb.nodeIP('n1'), '--port', String(OTLP_PORT), '--out', spansFile]);
    const configFile = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(configFile, [
      ...testbedDocs(tb),
      serviceDoc({ name: 'web', namespace: 'shop', clusterIP: VIP, selector: { app: 'web' }, ports: [{ port: 80, targetPort: HTTP_PORT, appProtocol: 'http' }] }),
    ]);
    const endpoint = `http://${tb.nodeIP('n1')}:${OTLP_PORT}/v1/traces`;
    for (const node of ['n1', 'n2']) {
      const a = new AgentProcess(tb, node, ['--access-log', 'off', '--tracing-endpoint', endpoint, '--tracing-sampling', '1']);
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

  it("a W3C caller's trace reaches the app through both nodes, and n1's agent exports the CLIENT span between them, n2's the SERVER span", async () => {
    const caller = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' };
    const echo = await call([`traceparent: 00-${caller.traceId}-${caller.spanId}-01`, 'tracestate: shop=1']);
    assert.equal(echo.pod, 'web-2');
    const got = received(echo.headers);
    assert.deepEqual([got.traceId, got.flags], [caller.traceId, '01'], 'one trace id from the client to the app');
    assert.notEqual(got.spanId, caller.spanId, "the app's parent is the proxy's span");
    assert.equal(echo.headers.tracestate, 'shop=1');

    const span = await spanOf(got.spanId);
    assert.deepEqual(
      { traceId: span.traceId, parent: span.parentSpanId, kind: span.kind, name: span.name },
      { traceId: caller.traceId, parent: caller.spanId, kind: KIND_CLIENT, name: 'web.shop.svc.cluster.local:80/*' },
    );
    assert.deepEqual(span.resource['service.name'], 'nodemesh');
    assert.deepEqual(span.resource['k8s.node.name'], 'n1', 'exported by the source node');
    assert.deepEqual(
      [span.attributes['http.request.method'], span.attributes['url.path'], span.attributes['http.response.status_code'], span.attributes['network.protocol.version']],
      ['GET', '/hello', 200, '1.1'],
    );
    assert.deepEqual([span.attributes['network.peer.address'], span.attributes['network.peer.port']], [tb.podIP('web-2'), HTTP_PORT]);
    assert.equal(span.attributes['nodemesh.response_flags'], '-');

    // n2's proxy, the destination reporter, exports the SERVER span of the same request under it.
    const server = await (agents.get('n1') as AgentProcess).until('the SERVER span from n2', async () => spans().find((s) => s.parentSpanId === got.spanId), 15_000);
    assert.deepEqual([server.traceId, server.kind, server.resource['k8s.node.name']], [caller.traceId, KIND_SERVER, 'n2']);
  });

  it('a caller without trace headers starts a new trace at the proxy, the same one the app sees', async () => {
    const got = received((await call()).headers);
    assert.equal(got.flags, '01', 'sampled at --tracing-sampling 1');
    const span = await spanOf(got.spanId);
    assert.deepEqual([span.traceId, span.parentSpanId], [got.traceId, null]);
  });

  it('a B3 caller keeps its trace id in traceparent and gets B3 headers with the new span id', async () => {
    const traceId = '80f198ee56343ba864fe8b2a57d3eff7';
    const echo = await call([`x-b3-traceid: ${traceId}`, 'x-b3-spanid: e457b5a2e4d86bd1', 'x-b3-sampled: 1']);
    const got = received(echo.headers);
    assert.equal(got.traceId, traceId);
    assert.deepEqual([echo.headers['x-b3-traceid'], echo.headers['x-b3-spanid'], echo.headers['x-b3-sampled']], [traceId, got.spanId, '1']);
    const span = await spanOf(got.spanId);
    assert.deepEqual([span.traceId, span.parentSpanId], [traceId, 'e457b5a2e4d86bd1']);
  });

  it("a caller's decision not to sample reaches the app and no span is exported", async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const got = received((await call([`traceparent: 00-${traceId}-b7ad6b7169203331-00`])).headers);
    assert.deepEqual([got.traceId, got.flags], [traceId, '00']);
    // Stopping the agent flushes its batch: anything it held is at the receiver now.
    await (agents.get('n1') as AgentProcess).stop();
    assert.equal(spans().filter((s) => s.traceId === traceId).length, 0);
  });

  it('the agent flushes its spans when it stops', async () => {
    const n1 = agents.get('n1') as AgentProcess;
    await n1.start(path.join(tb.scratchDir, 'mesh.yaml'));
    const got = received((await call()).headers);
    await n1.stop();
    assert.ok(spans().some((s) => s.spanId === got.spanId), 'the span of the last request was exported on stop');
  });
});
