import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { indexFromYaml, nodeAndShop } from '../testing/mesh.js';
import { workloadOf } from './peers.js';
import type { ProxyFlow } from './flow-table.js';
import { TcpMetrics } from './tcp-metrics.js';

const index = indexFromYaml(
  `${nodeAndShop('n1', '10.77.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: client-7d9f-x2x, namespace: shop, labels: { app.kubernetes.io/name: client, app: ignored, app.kubernetes.io/version: "1.2" } }
spec: { nodeName: n1, serviceAccountName: buyer }
status: { podIP: 10.244.1.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web, service.istio.io/workload-name: web } }
spec: { nodeName: n2 }
status: { podIP: 10.244.2.2 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
`,
  'n1',
);

const outbound = (over: Partial<ProxyFlow> = {}): ProxyFlow => ({
  direction: 'outbound',
  sourceIP: '10.244.1.2',
  sourcePort: 40000,
  sourcePod: 'shop/client-7d9f-x2x',
  dstIP: '10.96.0.10',
  dstPort: 80,
  service: 'shop/web',
  endpoint: { ip: '10.244.2.2', port: 8080, pod: 'shop/web-1', node: 'n2' },
  startMs: Date.now(),
  bytesSent: 0,
  bytesReceived: 0,
  responseFlags: '-',
  security: 'mutual_tls',
  ...over,
});

async function setup(open: ProxyFlow[] = []) {
  const registry = new Registry();
  const metrics = new TcpMetrics(registry, { index: () => index, trustDomain: 'cluster.local', openFlows: () => open });
  const value = async (name: string, labels: Record<string, string> = {}) => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
    return (m?.values ?? [])
      .filter((v) => Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
      .reduce((t, v) => t + v.value, 0);
  };
  return { metrics, value, registry };
}

it('derives workload, canonical service and revision from pod labels as Istio does', () => {
  const client = index.state.pods.get('shop/client-7d9f-x2x');
  assert.deepEqual(workloadOf(client!), {
    name: 'client-7d9f-x2x',
    namespace: 'shop',
    pod: 'client-7d9f-x2x',
    canonicalService: 'client',
    canonicalRevision: '1.2',
  });
  const web = workloadOf(index.state.pods.get('shop/web-1')!);
  assert.deepEqual([web.name, web.canonicalService, web.canonicalRevision], ['web', 'web', 'latest']);
});

it('labels a connection with Istio names and counts it once opened, bytes, closed', async () => {
  const { metrics, value, registry } = await setup();
  const flow = outbound({ bytesSent: 100, bytesReceived: 2000 });
  metrics.closed(flow);
  const json = await registry.getMetricsAsJSON();
  const labels = json.find((m) => m.name === 'istio_tcp_connections_opened_total')?.values[0]?.labels;
  assert.deepEqual(labels, {
    reporter: 'source',
    source_workload: 'client-7d9f-x2x',
    source_workload_namespace: 'shop',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/buyer',
    source_app: 'client',
    source_version: '1.2',
    source_canonical_service: 'client',
    source_canonical_revision: '1.2',
    source_cluster: 'Kubernetes',
    destination_service: 'web.shop.svc.cluster.local',
    destination_service_name: 'web',
    destination_service_namespace: 'shop',
    destination_workload: 'web',
    destination_workload_namespace: 'shop',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/default',
    destination_app: 'web',
    destination_version: 'latest',
    destination_canonical_service: 'web',
    destination_canonical_revision: 'latest',
    destination_cluster: 'Kubernetes',
    request_protocol: 'tcp',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
  assert.equal(await value('istio_tcp_connections_closed_total'), 1);
  assert.equal(await value('istio_tcp_received_bytes_total'), 100);
  assert.equal(await value('istio_tcp_sent_bytes_total'), 2000);
});

it('reports the progress of an open connection at each scrape, then only the rest at close', async () => {
  const flow = outbound();
  let live = { sent: 10, received: 0 };
  flow.live = () => live;
  const connecting = outbound({ sourcePort: 40001 });
  const { metrics, value } = await setup([flow, connecting]);
  metrics.collect();
  assert.equal(await value('istio_tcp_connections_opened_total'), 1, 'a connection still being set up waits');
  assert.equal(await value('istio_tcp_received_bytes_total'), 10);
  live = { sent: 50, received: 7 };
  metrics.collect();
  assert.equal(await value('istio_tcp_received_bytes_total'), 50);
  metrics.closed(Object.assign(flow, { bytesSent: 60, bytesReceived: 7 }));
  assert.equal(await value('istio_tcp_received_bytes_total'), 60);
  assert.equal(await value('istio_tcp_sent_bytes_total'), 7);
  assert.equal(await value('istio_tcp_connections_opened_total'), 1);
});

it('counts a same-node connection for both reporters; mutual_tls, and DENY for a refused one', async () => {
  const { metrics, value } = await setup();
  metrics.closed(outbound({ security: 'node_local', authorization: { allowed: false, reason: 'denied by shop/deny-all' } }));
  for (const reporter of ['source', 'destination']) {
    assert.equal(await value('istio_tcp_connections_closed_total', { reporter, connection_security_policy: 'mutual_tls', response_flags: 'DENY' }), 1);
  }
});

it('names an HBONE source by its verified identity; its workload only when the address matches it', async () => {
  const { metrics, value } = await setup();
  const inbound = (sourceIdentity: string): ProxyFlow => ({
    ...outbound({ direction: 'inbound', sourcePort: 0, dstIP: '10.244.2.2', dstPort: 8080, dstPod: 'shop/web-1', security: 'mutual_tls' }),
    sourcePod: undefined,
    service: undefined,
    endpoint: undefined,
    sourceIdentity,
  });
  metrics.closed(inbound('spiffe://cluster.local/ns/shop/sa/buyer'));
  metrics.closed(inbound('spiffe://cluster.local/ns/other/sa/intruder'));
  const d = { reporter: 'destination', destination_service: 'web.shop.svc.cluster.local' };
  assert.equal(await value('istio_tcp_connections_closed_total', { ...d, source_workload: 'client-7d9f-x2x' }), 1);
  assert.equal(await value('istio_tcp_connections_closed_total', { ...d, source_workload: 'unknown', source_workload_namespace: 'other' }), 1);
});

it('names a plaintext source (PERMISSIVE, :15006) by its address, never with a principal; security none', async () => {
  const { metrics, value } = await setup();
  const plaintext = (sourceIP: string): ProxyFlow => ({
    ...outbound({ direction: 'inbound', sourceIP, dstIP: '10.244.2.2', dstPort: 8080, dstPod: 'shop/web-1', security: 'none' }),
    sourcePod: undefined,
    service: undefined,
    endpoint: undefined,
  });
  metrics.closed(plaintext('10.244.1.2'));
  metrics.closed(plaintext('192.168.9.9'));
  const d = { reporter: 'destination', connection_security_policy: 'none', destination_workload: 'web' };
  assert.equal(await value('istio_tcp_connections_closed_total', { ...d, source_workload: 'client-7d9f-x2x', source_workload_namespace: 'shop', source_principal: 'unknown' }), 1);
  assert.equal(await value('istio_tcp_connections_closed_total', { ...d, source_workload: 'unknown', source_principal: 'unknown' }), 1);
});
