// `node dist/scripts/controller-scale.js [NODES PODS SERVICES]`: what one change costs the
// controller in a large cluster, and what it sends each node. Synthetic objects (default 100
// nodes, 5,000 pods, 500 Services in 20 enrolled namespaces) go through what the controller
// does per change: validation, every node's view, and each view's changes since the last one
// sent. The change relabels one pod. Prints one JSON line.
import { performance } from 'node:perf_hooks';
import { applyConfig } from '../agent/src/control/apply.js';
import type { KubeObject } from '../agent/src/controller/kube-kinds.js';
import { nodeViews } from '../agent/src/controller/node-view.js';
import { diffResources, type ViewResource } from '../agent/src/control/view-resource.js';
import type { MeshState } from '../agent/src/state/model.js';

const [nodes = 100, pods = 5000, services = 500] = process.argv.slice(2).map(Number);
const NAMESPACES = 20;

const objects: KubeObject[] = [];
for (let n = 0; n < nodes; n++) {
  objects.push({ apiVersion: 'v1', kind: 'Node', metadata: { name: `n${n}` }, status: { addresses: [{ type: 'InternalIP', address: `10.0.${n >> 8}.${n & 255}` }] } });
}
for (let s = 0; s < NAMESPACES; s++) objects.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns${s}`, labels: { 'nodemesh.io/mode': 'enabled' } } });
for (let s = 0; s < services; s++) {
  objects.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `svc${s}`, namespace: `ns${s % NAMESPACES}` },
    spec: { clusterIP: `10.96.${s >> 8}.${s & 255}`, selector: { app: `a${s}` }, ports: [{ port: 80, targetPort: 8080 }] },
  });
}
const pod = (p: number, app: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `p${p}`, namespace: `ns${p % NAMESPACES}`, uid: `uid-${p}`, labels: { app } },
  spec: { nodeName: `n${p % nodes}`, serviceAccountName: `sa${p % 50}`, containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] },
  status: { phase: 'Running', qosClass: 'BestEffort', podIP: `10.${100 + (p >> 16)}.${(p >> 8) & 255}.${p & 255}`, conditions: [{ type: 'Ready', status: 'True' }] },
});
const firstPod = objects.length;
for (let p = 0; p < pods; p++) objects.push(pod(p, `a${p % services}`));

const docs = (list: KubeObject[]) => list.map((value) => ({ value, origin: `${value.kind} ${value.metadata.namespace ?? ''}/${value.metadata.name}` }));
const sent = (views: (node: string) => { resources: readonly ViewResource[] }) => Array.from({ length: nodes }, (_, n) => views(`n${n}`).resources);

let state: MeshState = applyConfig(null, docs(objects), { node: '' });
const before = sent(nodeViews(objects));
const wholeBytes = before[0]!.reduce((sum, r) => sum + r.json.length, 0);

objects[firstPod] = pod(0, 'relabelled');
const t0 = performance.now();
state = applyConfig(state, docs(objects), { node: '' });
const views = nodeViews(objects);
let changed = 0;
let changedBytes = 0;
for (let n = 0; n < nodes; n++) {
  const diff = diffResources(before[n]!, views(`n${n}`).resources);
  changed += diff.changed.length + diff.removed.length;
  changedBytes += diff.changed.reduce((sum, r) => sum + r.json.length, 0);
}
const perChangeMs = performance.now() - t0;

console.log(
  JSON.stringify({
    nodes,
    pods,
    services,
    rejected: state.rejections.length,
    perChangeMs: Math.round(perChangeMs),
    resourcesPerNode: changed / nodes,
    bytesPerNode: Math.round(changedBytes / nodes),
    wholeViewMiB: +(wholeBytes / 2 ** 20).toFixed(1),
    rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
  }),
);
