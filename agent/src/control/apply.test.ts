import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MeshState } from '../state/model.js';
import { applyConfig } from './apply.js';
import { parseConfig } from './config-docs.js';
import { ACCEPTED_KINDS } from './kinds/index.js';

const NODE = 'node-1';
const CGROUPS = new Set(['web-1', 'web-2', 'web-3'].map((p) => `/sys/fs/cgroup/nodemesh/${p}`));
const cgroupExists = (p: string): boolean => CGROUPS.has(p);

const apply = (previous: MeshState | null, yaml: string): MeshState =>
  applyConfig(previous, parseConfig(yaml, 'mesh.yaml'), { node: NODE, cgroupExists });

const NODES = `
apiVersion: v1
kind: Node
metadata: { name: node-1 }
status: { addresses: [{ type: Hostname, address: node-1 }, { type: InternalIP, address: 10.0.0.1 }] }
---
apiVersion: v1
kind: Node
metadata: { name: node-2 }
status: { addresses: [{ type: InternalIP, address: "fd00::2" }, { type: InternalIP, address: 10.0.0.2 }] }
`;

const NAMESPACE = `
apiVersion: v1
kind: Namespace
metadata: { name: demo, labels: { nodemesh.io/mode: enabled } }
`;

const pod = (name: string, extra = ''): string => `
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: demo
  labels: { app: web }
  annotations: { nodemesh.io/cgroup: /sys/fs/cgroup/nodemesh/${name} }
spec:
  nodeName: node-1
  serviceAccountName: web
  containers: [{ name: app, ports: [{ name: http, containerPort: 8080 }] }]
status: { podIP: 10.1.0.5 }
${extra}`;

const service = (port: number | string): string => `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: demo }
spec:
  clusterIP: 10.96.0.10
  selector: { app: web }
  ports: [{ name: http, port: ${port}, targetPort: http, appProtocol: http }]
`;

const file = (...docs: string[]): string => docs.join('\n---\n');
const GOOD = file(NODES, NAMESPACE, pod('web-1'), service(80));

describe('applyConfig', () => {
  it('turns a valid file into the mesh state', () => {
    const state = apply(null, GOOD);
    assert.equal(state.version, 1);
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.nodes.get('node-1'), { name: 'node-1', internalIP: '10.0.0.1' });
    // A dual-stack node is reached on its IPv4 InternalIP.
    assert.equal(state.nodes.get('node-2')?.internalIP, '10.0.0.2');
    assert.equal(state.namespaces.get('demo')?.enrolled, true);
    assert.deepEqual(state.pods.get('demo/web-1'), {
      namespace: 'demo',
      name: 'web-1',
      nodeName: 'node-1',
      serviceAccount: 'web',
      labels: { app: 'web' },
      ready: true,
      containerPorts: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
      podIP: '10.1.0.5',
      cgroupPath: '/sys/fs/cgroup/nodemesh/web-1',
    });
    assert.deepEqual(state.services.get('demo/web'), {
      namespace: 'demo',
      name: 'web',
      clusterIP: '10.96.0.10',
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' }],
      selector: { app: 'web' },
    });
  });

  it('applies defaults and creates undeclared namespaces, not enrolled', () => {
    const state = apply(null, `
apiVersion: v1
kind: Pod
metadata: { name: job }
spec: { nodeName: node-2 }
status: { conditions: [{ type: Ready, status: "False" }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: data }
spec: { clusterIP: None, ports: [{ port: 5432 }] }
`);
    assert.deepEqual(state.rejections, []);
    const job = state.pods.get('default/job');
    assert.equal(job?.serviceAccount, 'default');
    assert.equal(job?.ready, false);
    assert.equal(job?.podIP, undefined);
    assert.deepEqual(state.services.get('data/db'), {
      namespace: 'data', name: 'db', clusterIP: null, ports: [{ port: 5432, targetPort: 5432, protocol: 'TCP' }], selector: null,
    });
    assert.deepEqual(state.namespaces.get('default'), { name: 'default', labels: {}, enrolled: false });
    assert.equal(state.namespaces.get('data')?.enrolled, false);
  });

  it('rejects each bad resource alone and applies the rest', () => {
    const state = apply(null, file(
      NODES,
      NAMESPACE,
      pod('web-1'),
      service(70000),
      'apiVersion: foo.example/v1\nkind: Widget\nmetadata: { name: w }',
      pod('web-2').replace('podIP: 10.1.0.5', 'podIP: 10.1.0.500'),
      pod('web-3').replace('nodeName: node-1', 'hostname: web-3'),
      NODES.replace('node-1 }', 'node-3 }').replace('10.0.0.1', '10.0.0.300').split('---')[0]!,
    ));
    assert.deepEqual(state.rejections, [
      { resource: 'Service demo/web', field: 'spec.ports[0].port', reason: 'must be an integer between 1 and 65535, got number 70000' },
      {
        resource: 'Widget w',
        field: 'kind',
        reason: `unknown kind foo.example/v1 Widget; accepted: ${ACCEPTED_KINDS}`,
      },
      { resource: 'Pod demo/web-2', field: 'status.podIP', reason: 'must be an IPv4 address, got "10.1.0.500"' },
      { resource: 'Pod demo/web-3', field: 'spec.nodeName', reason: 'is required: the node the pod runs on (its proxy serves it)' },
      { resource: 'Node node-3', field: 'status.addresses[1].address', reason: 'must be an IPv4 address, got "10.0.0.300"' },
    ]);
    assert.deepEqual([...state.pods.keys()], ['demo/web-1']);
    assert.equal(state.services.size, 0);
    assert.deepEqual([...state.nodes.keys()], ['node-1', 'node-2']);
  });

  it('rejects a pod on this node whose cgroup directory does not exist, but not on other nodes', () => {
    const missing = pod('web-9');
    const elsewhere = pod('web-8').replace('nodeName: node-1', 'nodeName: node-2');
    const state = apply(null, file(missing, elsewhere));
    assert.deepEqual(state.rejections, [{
      resource: 'Pod demo/web-9',
      field: 'metadata.annotations[nodemesh.io/cgroup]',
      reason: 'cgroup directory /sys/fs/cgroup/nodemesh/web-9 does not exist on this node (node-1); check the pod is running and the path is under the cgroup v2 mount',
    }]);
    assert.equal(state.pods.get('demo/web-8')?.cgroupPath, '/sys/fs/cgroup/nodemesh/web-8');
  });

  it('keeps the last good version of a resource that becomes invalid', () => {
    const first = apply(null, GOOD);
    const second = apply(first, file(NODES, NAMESPACE, pod('web-1'), service(70000)));
    assert.equal(second.rejections.length, 1);
    assert.equal(second.services.get('demo/web')?.ports[0]?.port, 80);
    assert.equal(second.version, 1, 'nothing accepted changed');
    // A resource that was never good is simply absent.
    const fresh = apply(null, file(NODES, service(70000)));
    assert.equal(fresh.services.size, 0);
  });

  it('increments the version only when the accepted content changes, and removes what the file dropped', () => {
    const first = apply(null, GOOD);
    assert.equal(apply(first, GOOD).version, 1);
    const changed = apply(first, file(NODES, NAMESPACE, pod('web-1'), service(8080)));
    assert.equal(changed.version, 2);
    assert.equal(changed.services.get('demo/web')?.ports[0]?.port, 8080);
    const removed = apply(changed, file(NODES, NAMESPACE, service(8080)));
    assert.equal(removed.version, 3);
    assert.equal(removed.pods.size, 0);
  });

  it('rejects the later of two resources with the same kind, namespace and name', () => {
    const state = apply(null, file(service(80), service(81)));
    assert.deepEqual(state.rejections, [{
      resource: 'Service demo/web',
      field: 'metadata.name',
      reason: 'duplicate: already declared in mesh.yaml document 1, line 2; the first one applies',
    }]);
    assert.equal(state.services.get('demo/web')?.ports[0]?.port, 80);
  });

  it('rejects a document that is not a Kubernetes object', () => {
    const state = apply(null, '- just\n- a list\n');
    assert.deepEqual(state.rejections, [{
      resource: 'mesh.yaml document 1, line 1',
      field: '',
      reason: 'must be a mapping with apiVersion, kind and metadata, got a list',
    }]);
  });

  it('keeps the last good version of a resource whose apiVersion becomes wrong', () => {
    const first = apply(null, GOOD);
    assert.equal(first.namespaces.get('demo')?.enrolled, true);
    for (const bad of ['v2', '1']) {
      const next = apply(first, file(NODES, NAMESPACE.replace('apiVersion: v1', `apiVersion: ${bad}`), pod('web-1'), service(80)));
      assert.equal(next.rejections[0]?.field, 'apiVersion');
      assert.equal(next.namespaces.get('demo')?.enrolled, true, `the namespace stays enrolled with apiVersion ${bad}`);
      assert.equal(next.version, 1, 'nothing accepted changed');
    }
  });

  it('names the apiVersion when the kind exists under another one', () => {
    const state = apply(null, 'apiVersion: apps/v1\nkind: Pod\nmetadata: { name: p }\n');
    assert.equal(state.rejections[0]?.field, 'apiVersion');
  });

  it('Kubernetes mode: finds a local pod cgroup from its UID and QoS class, never for pods of other nodes', () => {
    const asked: Array<{ uid: string; qosClass?: string }> = [];
    const podCgroup = (p: { uid: string; qosClass?: string }) => (asked.push(p), `/sys/fs/cgroup/kubepods/burstable/pod${p.uid}`);
    const kubePod = (name: string, node: string, uid: string) => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: demo, uid: ${uid} }
spec: { nodeName: ${node}, containers: [{ name: app }] }
status: { podIP: 10.1.0.9, qosClass: Burstable }
---`;
    const yaml = kubePod('here', 'node-1', 'a1') + kubePod('there', 'node-2', 'b2');
    const state = applyConfig(null, parseConfig(yaml, 'snapshot'), { node: NODE, cgroupExists, podCgroup });
    assert.deepEqual(state.rejections, []);
    assert.equal(state.pods.get('demo/here')?.cgroupPath, '/sys/fs/cgroup/kubepods/burstable/poda1');
    assert.equal(state.pods.get('demo/there')?.cgroupPath, undefined);
    assert.deepEqual(asked, [{ uid: 'a1', qosClass: 'Burstable' }]);
  });
});

