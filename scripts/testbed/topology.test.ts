// Unit tests of the testbed plan and its Kubernetes description (no root needed).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { kubeObjects, stringifyDocs } from './node-yaml.js';
import { plan, podCgroupDir, type TestbedSpec } from './topology.js';

const spec: TestbedSpec = {
  nodes: [
    { name: 'n1', pods: [{ name: 'a', namespace: 'shop', labels: { app: 'a' }, serviceAccount: 'sa-a' }, { name: 'b', namespace: 'shop' }] },
    { name: 'n2', pods: [{ name: 'c', namespace: 'other' }] },
  ],
  namespaces: { shop: { 'nodemesh.io/mode': 'enabled' } },
};

describe('testbed plan', () => {
  it('gives node i 10.77.0.<i+1> and its k-th pod 10.244.<i+1>.<k+2>', () => {
    const p = plan(spec, 'abc123');
    assert.deepEqual(p.nodes.map((n) => [n.netns, n.ip, n.bridgeIp]), [
      ['nmt-abc123-n1', '10.77.0.1', '10.244.1.1'],
      ['nmt-abc123-n2', '10.77.0.2', '10.244.2.1'],
    ]);
    assert.deepEqual(p.nodes.flatMap((n) => n.pods.map((pod) => [pod.netns, pod.ip])), [
      ['nmt-abc123-a', '10.244.1.2'],
      ['nmt-abc123-b', '10.244.1.3'],
      ['nmt-abc123-c', '10.244.2.2'],
    ]);
  });

  it('joins two nodes with a veth pair and any other count through an underlay bridge netns', () => {
    assert.equal(plan(spec, 'x').underlayNetns, null);
    assert.equal(plan({ nodes: [{ name: 'solo', pods: [] }] }, 'x').underlayNetns, 'nmt-x--underlay');
  });

  it('rejects duplicate names, bad names and bad ids with NM_ERR_TESTBED_SPEC', () => {
    const dup = { nodes: [{ name: 'n1', pods: [{ name: 'n1', namespace: 'x' }] }] };
    assert.throws(() => plan(dup, 'x'), { code: 'NM_ERR_TESTBED_SPEC', message: /used twice/ });
    assert.throws(() => plan({ nodes: [{ name: 'Bad_Name', pods: [] }] }, 'x'), { code: 'NM_ERR_TESTBED_SPEC' });
    assert.throws(() => plan(spec, 'has-dash'), { code: 'NM_ERR_TESTBED_SPEC' });
    assert.throws(() => plan({ nodes: [] }, 'x'), { code: 'NM_ERR_TESTBED_SPEC' });
  });
});

describe('testbed Kubernetes objects', () => {
  const docs = parseAllDocuments(stringifyDocs(kubeObjects(spec, plan(spec, 'id1'), (pod) => `/cg/${pod}`))).map((d) => d.toJSON());

  it('describes each node with its InternalIP', () => {
    const nodes = docs.filter((d) => d.kind === 'Node');
    assert.deepEqual(nodes.map((n) => [n.metadata.name, n.status.addresses]), [
      ['n1', [{ type: 'InternalIP', address: '10.77.0.1' }]],
      ['n2', [{ type: 'InternalIP', address: '10.77.0.2' }]],
    ]);
  });

  it('describes every namespace used, with the labels the spec gives', () => {
    const namespaces = docs.filter((d) => d.kind === 'Namespace');
    assert.deepEqual(namespaces.map((n) => [n.metadata.name, n.metadata.labels]), [
      ['other', {}],
      ['shop', { 'nodemesh.io/mode': 'enabled' }],
    ]);
  });

  it('describes each pod with its node, IP, cgroup, service account, ports and readiness', () => {
    const a = docs.find((d) => d.kind === 'Pod' && d.metadata.name === 'a');
    assert.equal(a.metadata.namespace, 'shop');
    assert.deepEqual(a.metadata.labels, { app: 'a' });
    assert.equal(a.metadata.annotations['nodemesh.io/cgroup'], '/cg/a');
    assert.equal(a.spec.nodeName, 'n1');
    assert.equal(a.spec.serviceAccountName, 'sa-a');
    assert.deepEqual(a.spec.containers[0].ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]), [
      ['http', 8080],
      ['echo', 9000],
    ]);
    assert.equal(a.status.podIP, '10.244.1.2');
    assert.deepEqual(a.status.conditions, [{ type: 'Ready', status: 'True' }]);
    const b = docs.find((d) => d.kind === 'Pod' && d.metadata.name === 'b');
    assert.equal(b.spec.serviceAccountName, 'default');
  });
});

describe('testbed kubelet cgroup layouts', () => {
  const pod = plan(spec, 'id1').nodes[0]!.pods[0]!;

  it('gives each pod a stable RFC 4122 UUID', () => {
    assert.match(pod.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(plan(spec, 'id1').nodes[0]!.pods[0]!.uid, pod.uid);
    assert.notEqual(plan(spec, 'id2').nodes[0]!.pods[0]!.uid, pod.uid);
  });

  it('names pod cgroups as the cgroupfs and systemd drivers do for BestEffort pods', () => {
    assert.equal(podCgroupDir('cgroupfs', pod), `kubepods/besteffort/pod${pod.uid}`);
    assert.equal(
      podCgroupDir('systemd', pod),
      `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${pod.uid.replaceAll('-', '_')}.slice`,
    );
    assert.equal(podCgroupDir(undefined, pod), 'a');
  });

  it('leaves the cgroup annotation out of the objects for the API server', () => {
    const objects = kubeObjects(spec, plan(spec, 'id1')) as Array<{ kind: string; metadata: { annotations?: unknown; uid?: string } }>;
    const a = objects.find((o) => o.kind === 'Pod')!;
    assert.equal(a.metadata.annotations, undefined);
    assert.equal(a.metadata.uid, pod.uid);
  });
});
