import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyConfig } from '../control/apply.js';
import { lookupKind } from '../control/kinds/index.js';
import { WATCHED_KINDS, type KubeObject } from './kube-kinds.js';
import { nodeViews } from './node-view.js';

const node = (name: string, ip: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, uid: `uid-${name}`, resourceVersion: '7', labels: { 'kubernetes.io/hostname': name }, annotations: { 'node.alpha.kubernetes.io/ttl': '0' } },
  spec: { podCIDR: '10.244.0.0/24', taints: [] },
  status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }], capacity: { cpu: '4' }, conditions: [{ type: 'Ready', status: 'True' }] },
});

const namespace = (name: string, labels: Record<string, string> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name, labels, resourceVersion: '3', managedFields: [{ manager: 'kubectl' }] },
  spec: { finalizers: ['kubernetes'] },
  status: { phase: 'Active' },
});

const service = (name: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'shop', resourceVersion: '9', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"json"}' } },
  spec: { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: name } },
  status: { loadBalancer: {} },
});

function pod(name: string, nodeName: string, extra: { labels?: Record<string, string>; podIP?: string; phase?: string } = {}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'shop',
      uid: `uid-${name}`,
      resourceVersion: '12',
      generation: 1,
      creationTimestamp: '2024-05-01T10:00:00Z',
      labels: extra.labels ?? { app: 'web' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', 'example.com/owner': 'team-a' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-1', uid: 'rs' }],
      managedFields: [{ manager: 'kube-controller-manager' }],
    },
    spec: {
      nodeName,
      serviceAccountName: 'web',
      containers: [{ name: 'app', image: 'web:1', env: [{ name: 'SECRET', value: 'x' }], ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }],
      volumes: [{ name: 'token' }],
    },
    status: {
      phase: extra.phase ?? 'Running',
      podIP: extra.podIP ?? '10.244.1.5',
      hostIP: '10.0.0.1',
      qosClass: 'Burstable',
      conditions: [{ type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: '2024-05-01T10:00:05Z' }],
      containerStatuses: [{ name: 'app', restartCount: 3 }],
    },
  };
}

const route: KubeObject = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'web', namespace: 'shop', generation: 4, resourceVersion: '20' },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] },
  status: { parents: [{ parentRef: { name: 'web' }, conditions: [{ type: 'Accepted', status: 'True', lastTransitionTime: '2024-05-01T10:00:00Z' }] }] },
};

const cluster = (): KubeObject[] => [
  route,
  pod('web-2', 'node-2'),
  service('web'),
  pod('web-1', 'node-1'),
  namespace('shop', { 'nodemesh.io/mode': 'enabled' }),
  node('node-2', '10.0.0.2'),
  node('node-1', '10.0.0.1'),
];

const parsed = (objects: KubeObject[], nodeName: string): Array<Record<string, any>> => nodeViews(objects)(nodeName).resources.map((r) => JSON.parse(r.json));

describe('nodeView', () => {
  it('lists every node, namespace, service, running pod and route, in kind order then namespace and name', () => {
    const { resources } = nodeViews(cluster())('node-1');
    assert.deepEqual(
      resources.map((r) => `${r.kind} ${r.namespace}/${r.name}`),
      ['Node /node-1', 'Node /node-2', 'Namespace /shop', 'Service shop/web', 'Pod shop/web-1', 'Pod shop/web-2', 'HTTPRoute shop/web'],
    );
    assert.equal(resources[0]!.apiVersion, 'v1');
    assert.equal(resources.at(-1)!.apiVersion, 'gateway.networking.k8s.io/v1');
  });

  it("keeps of a pod what agents read; annotations and QoS class only for the node's own pods", () => {
    const [local] = parsed([pod('web-1', 'node-1')], 'node-1');
    assert.deepEqual(local, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'web-1',
        namespace: 'shop',
        uid: 'uid-web-1',
        creationTimestamp: '2024-05-01T10:00:00Z',
        labels: { app: 'web' },
        annotations: { 'example.com/owner': 'team-a' },
      },
      spec: { nodeName: 'node-1', serviceAccountName: 'web', containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
      status: { podIP: '10.244.1.5', conditions: [{ type: 'Ready', status: 'True' }], qosClass: 'Burstable' },
    });
    const [remote] = parsed([pod('web-1', 'node-1')], 'node-2');
    assert.equal(remote!.metadata.annotations, undefined);
    assert.equal(remote!.status.qosClass, undefined);
    assert.deepEqual(remote!.status, { podIP: '10.244.1.5', conditions: [{ type: 'Ready', status: 'True' }] });
  });

  it('leaves out pods that ended, have no IP yet, or use the host network', () => {
    const host = pod('agent', 'node-1');
    (host.spec as Record<string, unknown>).hostNetwork = true;
    const objects = [pod('done', 'node-1', { phase: 'Succeeded' }), pod('failed', 'node-1', { phase: 'Failed' }), pod('pending', 'node-1', { podIP: '' }), host, pod('up', 'node-1')];
    assert.deepEqual(nodeViews(objects)('node-1').resources.map((r) => r.name), ['up']);
  });

  it('reduces a Node to its name, labels and addresses, and drops bookkeeping metadata and status elsewhere', () => {
    const [n, ns, svc, httpRoute] = parsed([node('node-1', '10.0.0.1'), namespace('shop'), service('web'), route], 'node-1');
    assert.deepEqual(n, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'node-1', labels: { 'kubernetes.io/hostname': 'node-1' } },
      status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }, { type: 'Hostname', address: 'node-1' }] },
    });
    assert.deepEqual(ns, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: {} }, spec: { finalizers: ['kubernetes'] } });
    assert.deepEqual(svc!.metadata, { name: 'web', namespace: 'shop' });
    assert.equal(svc!.status, undefined);
    assert.deepEqual(httpRoute, { apiVersion: route.apiVersion, kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'shop' }, spec: route.spec });
  });

  it('never carries a Secret, a ConfigMap or a kind it does not know', () => {
    const secret: KubeObject = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'shop' }, data: { password: 'aHVudGVyMg==' } };
    const configMap: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'shop' }, data: {} };
    const odd: KubeObject = { apiVersion: 'example.com/v1', kind: 'Pod', metadata: { name: 'x', namespace: 'shop' } };
    assert.deepEqual(nodeViews([secret, configMap, odd])('node-1').resources, []);
  });

  it('gives the same hash for the same objects in any order and key order', () => {
    const a = nodeViews(cluster())('node-1');
    const reordered = cluster()
      .reverse()
      .map((o) => Object.fromEntries(Object.entries(o).reverse()) as KubeObject);
    const b = nodeViews(reordered)('node-1');
    assert.equal(b.hash, a.hash);
    assert.deepEqual(b.resources, a.resources);
    assert.match(a.hash, /^[0-9a-f]{64}$/);
  });

  it('changes the hash when a label changes, and only where a change is visible', () => {
    const before = cluster();
    const relabelled = cluster().map((o) => (o.metadata.name === 'web-1' ? pod('web-1', 'node-1', { labels: { app: 'web', version: 'v2' } }) : o));
    assert.notEqual(nodeViews(relabelled)('node-1').hash, nodeViews(before)('node-1').hash);
    assert.notEqual(nodeViews(relabelled)('node-2').hash, nodeViews(before)('node-2').hash);

    // Bookkeeping and a pod's annotations move nothing on other nodes.
    const annotated = cluster().map((o) => {
      if (o.metadata.name !== 'web-1') return o;
      const p = pod('web-1', 'node-1');
      p.metadata.resourceVersion = '99';
      (p.metadata.annotations as Record<string, string>)['example.com/owner'] = 'team-b';
      return p;
    });
    assert.equal(nodeViews(annotated)('node-2').hash, nodeViews(before)('node-2').hash);
    assert.notEqual(nodeViews(annotated)('node-1').hash, nodeViews(before)('node-1').hash);
  });

  it('serves only kinds the agent accepts, and a valid cluster passes agent validation whole', () => {
    for (const k of WATCHED_KINDS) assert.ok(lookupKind(k.apiVersion, k.kind), `${k.apiVersion} ${k.kind} is not accepted by agents`);
    for (const nodeName of ['node-1', 'node-2']) {
      const docs = nodeViews(cluster())(nodeName).resources.map((r) => ({ origin: `${r.kind} ${r.name}`, value: JSON.parse(r.json) as unknown }));
      const state = applyConfig(null, docs, { node: nodeName, cgroupExists: () => true });
      assert.deepEqual(state.rejections, []);
      assert.equal(state.pods.size, 2);
      assert.equal(state.httpRoutes.size, 1);
    }
  });

  const slice = (name: string, labels: Record<string, string>): KubeObject => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'shop', labels, resourceVersion: '31', generation: 2, ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'db', uid: 's' }] },
    addressType: 'IPv4',
    endpoints: [
      {
        addresses: ['192.0.2.10'],
        conditions: { ready: true, serving: true, terminating: false },
        hostname: 'db-0',
        nodeName: 'node-2',
        zone: 'eu-1a',
        hints: { forZones: [{ name: 'eu-1a' }] },
        targetRef: { kind: 'Pod', name: 'db-0', namespace: 'shop', uid: 'u', resourceVersion: '5' },
      },
      { addresses: ['192.0.2.11'] },
    ],
    ports: [{ name: 'sql', port: 5432, protocol: 'TCP', appProtocol: 'postgresql' }],
  });

  it('keeps of an EndpointSlice what agents read, and leaves out the slices the EndpointSlice controller makes for selector Services', () => {
    const own = slice('db-1', { 'kubernetes.io/service-name': 'db', 'endpointslice.kubernetes.io/managed-by': 'team-db', team: 'db' });
    const mirrored = slice('legacy-1', { 'kubernetes.io/service-name': 'legacy', 'endpointslice.kubernetes.io/managed-by': 'endpointslicemirroring-controller.k8s.io' });
    const managed = slice('web-abcde', { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' });
    assert.deepEqual(nodeViews([managed, mirrored, own])('node-1').resources.map((r) => r.name), ['db-1', 'legacy-1']);
    assert.deepEqual(parsed([own], 'node-1')[0], {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'db-1', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'db' } },
      addressType: 'IPv4',
      endpoints: [
        { addresses: ['192.0.2.10'], conditions: { ready: true } },
        { addresses: ['192.0.2.11'] },
      ],
      ports: [{ name: 'sql', port: 5432, protocol: 'TCP', appProtocol: 'postgresql' }],
    });
    // Readiness moves the view; a serving flag, a zone or bookkeeping does not.
    const withConditions = (conditions: Record<string, boolean>): KubeObject => {
      const o = slice('db-1', own.metadata.labels as Record<string, string>);
      (o.endpoints as Array<Record<string, unknown>>)[0]!.conditions = conditions;
      o.metadata.resourceVersion = '32';
      return o;
    };
    assert.equal(nodeViews([withConditions({ ready: true, serving: false, terminating: true })])('node-1').hash, nodeViews([own])('node-1').hash);
    assert.notEqual(nodeViews([withConditions({ ready: false })])('node-1').hash, nodeViews([own])('node-1').hash);
    const state = applyConfig(null, nodeViews([own])('node-1').resources.map((r) => ({ origin: r.name, value: JSON.parse(r.json) as unknown })), { node: 'node-1', cgroupExists: () => true });
    assert.deepEqual(state.rejections, []);
    assert.equal(state.endpointSlices.get('shop/db-1')?.endpoints.length, 2);
  });
});
