import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Registry, type MetricValueWithName } from 'prom-client';
import { indexFromYaml, nodeAndShop } from '../testing/mesh.js';
import { requestRecord } from '../testing/request-record.js';
import { ISTIO_BUCKETS, RequestMetrics } from './request-metrics.js';

const index = indexFromYaml(
  `${nodeAndShop('n1', '10.77.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: client-1, namespace: shop, labels: { app: client, version: v1 } }
spec: { nodeName: n1, serviceAccountName: buyer }
status: { podIP: 10.244.1.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web, service.istio.io/canonical-name: storefront } }
spec: { nodeName: n1, serviceAccountName: web }
status: { podIP: 10.244.1.3 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: shop, labels: { app: web, version: v2 } }
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

function setup() {
  const registry = new Registry();
  const metrics = new RequestMetrics(registry, { index: () => index, trustDomain: 'cluster.local' });
  const series = async (name: string, labels: Record<string, string> = {}) =>
    (((await registry.getMetricsAsJSON()).find((m) => m.name === name)?.values ?? []) as Array<MetricValueWithName<string>>).filter((v) =>
      Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
    );
  const value = async (name: string, labels: Record<string, string> = {}) => (await series(name, labels)).reduce((t, v) => t + v.value, 0);
  return { metrics, series, value };
}

const client = {
  source_workload: 'client-1',
  source_workload_namespace: 'shop',
  source_principal: 'spiffe://cluster.local/ns/shop/sa/buyer',
  source_app: 'client',
  source_version: 'v1',
  source_canonical_service: 'client',
  source_canonical_revision: 'v1',
  source_cluster: 'Kubernetes',
};
const service = {
  destination_service: 'web.shop.svc.cluster.local',
  destination_service_name: 'web',
  destination_service_namespace: 'shop',
};

it('labels a same-node request with exactly Istio label set and values', async () => {
  const { metrics, series } = setup();
  metrics.request(requestRecord(index, 'shop/client-1', { service: 'shop/web', endpoint: 'shop/web-1' }));
  const [sample] = await series('istio_requests_total');
  assert.deepEqual(sample?.labels, {
    reporter: 'source',
    ...client,
    ...service,
    destination_workload: 'web-1',
    destination_workload_namespace: 'shop',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/web',
    destination_app: 'storefront',
    destination_version: 'latest',
    destination_canonical_service: 'storefront',
    destination_canonical_revision: 'latest',
    destination_cluster: 'Kubernetes',
    request_protocol: 'http',
    response_code: '200',
    grpc_response_status: '',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
  assert.equal(sample?.value, 1);
});

it('labels a cross-node request by the pod that answered, and a destination report by the verified identity', async () => {
  const { metrics, value } = setup();
  const remote = requestRecord(index, 'shop/client-1', { service: 'shop/web', endpoint: 'shop/web-2' });
  metrics.request(remote);
  const web2 = { ...service, destination_workload: 'web-2', destination_canonical_service: 'web', destination_version: 'v2', connection_security_policy: 'mutual_tls' };
  assert.equal(await value('istio_requests_total', { reporter: 'source', ...client, ...web2 }), 1);
  // The destination proxy knows the source by its certificate and address, not its pod.
  const bySource = { ip: '10.244.1.2', identity: 'spiffe://cluster.local/ns/shop/sa/buyer' };
  metrics.request({ ...remote, reporter: 'destination', source: bySource });
  metrics.request({ ...remote, reporter: 'destination', source: { ...bySource, identity: 'spiffe://cluster.local/ns/other/sa/intruder' } });
  assert.equal(await value('istio_requests_total', { reporter: 'destination', ...client, ...web2 }), 1);
  assert.equal(
    await value('istio_requests_total', { reporter: 'destination', source_workload: 'unknown', source_workload_namespace: 'other', source_principal: 'spiffe://cluster.local/ns/other/sa/intruder' }),
    1,
  );
});

it('labels gRPC calls with their status, and requests no upstream answered with unknown destinations', async () => {
  const { metrics, value } = setup();
  const grpc = { protocol: 'grpc', httpVersion: '2' } as const;
  metrics.request(requestRecord(index, 'shop/client-1', { service: 'shop/web', endpoint: 'shop/web-2' }, { ...grpc, grpcStatus: 0 }));
  metrics.request(requestRecord(index, 'shop/client-1', { service: 'shop/web' }, { ...grpc, grpcStatus: 14, responseFlags: 'UH' }));
  metrics.request(requestRecord(index, 'shop/client-1', { service: 'shop/web' }, { status: 0, responseFlags: 'DC' }));
  assert.equal(await value('istio_requests_total', { request_protocol: 'grpc', response_code: '200', grpc_response_status: '0', destination_workload: 'web-2' }), 1);
  assert.equal(await value('istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '14', response_flags: 'UH', destination_workload: 'unknown', ...service }), 1);
  assert.equal(await value('istio_requests_total', { request_protocol: 'http', response_code: '0', response_flags: 'DC', grpc_response_status: '' }), 1);
});

it('observes duration and body sizes in Istio buckets', async () => {
  const { metrics, series } = setup();
  const to = { service: 'shop/web', endpoint: 'shop/web-1' };
  metrics.request(requestRecord(index, 'shop/client-1', to, { durationMs: 3.25, requestBytes: 0, responseBytes: 120 }));
  metrics.request(requestRecord(index, 'shop/client-1', to, { durationMs: 700, requestBytes: 2048, responseBytes: 5 }));
  const bucket = async (name: string, le: number) => (await series(name)).find((v) => v.metricName === `${name}_bucket` && v.labels.le === le)?.value;
  const sum = async (name: string) => (await series(name)).find((v) => v.metricName === `${name}_sum`)?.value;
  const durations = 'istio_request_duration_milliseconds';
  assert.deepEqual(await Promise.all([1, 5, 500, 1000].map((le) => bucket(durations, le))), [0, 1, 1, 2]);
  assert.equal(await sum(durations), 703.25);
  assert.deepEqual(await Promise.all([0.5, 1, 2500].map((le) => bucket('istio_request_bytes', le))), [1, 1, 2]);
  assert.deepEqual(await Promise.all([5, 100, 250].map((le) => bucket('istio_response_bytes', le))), [1, 1, 2]);
  const les = (await series(durations)).filter((v) => v.metricName === `${durations}_bucket`).map((v) => v.labels.le);
  assert.deepEqual(les, [...ISTIO_BUCKETS, '+Inf']);
});

it('counts retries and overflows by destination service, local replies by flag', async () => {
  const { metrics, value } = setup();
  const to = { service: 'shop/web', endpoint: 'shop/web-2' };
  metrics.request(requestRecord(index, 'shop/client-1', to, { retries: 2, status: 503 }));
  metrics.request(requestRecord(index, 'shop/client-1', to, { retries: 1 }));
  metrics.request(requestRecord(index, 'shop/client-1', { service: 'shop/web' }, { status: 503, responseFlags: 'UO' }));
  metrics.request(requestRecord(index, 'shop/client-1', { service: 'shop/web' }, { status: 404, responseFlags: 'NR' }));
  metrics.request(requestRecord(index, 'shop/client-1', to, { status: 0, responseFlags: 'DC' }));
  assert.equal(await value('nodemesh_http_retries_total', { destination_service: 'web.shop.svc.cluster.local' }), 3);
  assert.equal(await value('nodemesh_http_overflows_total', { destination_service: 'web.shop.svc.cluster.local' }), 1);
  assert.equal(await value('nodemesh_http_local_replies_total', { response_flags: 'UO' }), 1);
  assert.equal(await value('nodemesh_http_local_replies_total', { response_flags: 'NR' }), 1);
  assert.equal(await value('nodemesh_http_local_replies_total'), 2, 'a client that left is no local reply');
});
