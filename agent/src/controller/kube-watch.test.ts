import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeApiServer } from '../testing/kube-api-server.js';
import { memoryLogger } from '../testing/mesh.js';
import { WATCHED_KINDS, type KubeObject } from './kube-kinds.js';
import { KubeWatch } from './kube-watch.js';

async function waitFor(what: string, check: () => boolean, timeoutMs = 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await sleep(5);
  }
}

const pod = (name: string, labels: Record<string, string> = { app: 'web' }) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', labels, managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': {} } }] },
  spec: { nodeName: 'node-1', serviceAccountName: 'web', containers: [{ name: 'app' }] },
  status: { phase: 'Running', podIP: '10.244.1.5' },
});
const fault = (name: string) => ({ apiVersion: 'nodemesh.io/v1alpha1', kind: 'FaultInjection', metadata: { name, namespace: 'shop' }, spec: {} });

describe('KubeWatch against the API server double', () => {
  let srv: KubeApiServer;
  let watch: KubeWatch;
  let changes: number;
  let logs: ReturnType<typeof memoryLogger>;

  const find = (kind: string, name: string): KubeObject | undefined => watch.objects().find((o) => o.kind === kind && o.metadata.name === name);
  const labelsOf = (name: string): unknown => find('Pod', name)?.metadata.labels;

  beforeEach(async () => {
    srv = await KubeApiServer.start();
    srv.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'nodemesh.io/mode': 'enabled' } } });
    srv.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.0.1' }] } });
    srv.create({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 80 }] } });
    srv.create(pod('web-1'));
    srv.create({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'shop' }, spec: { parentRefs: [] } });
    changes = 0;
    logs = memoryLogger();
    watch = new KubeWatch({ kubeConfig: srv.kubeConfig(), log: logs.log, onChange: () => changes++, backoff: { initialMs: 20, maxMs: 200 } });
  });

  afterEach(async () => {
    watch.stop();
    await srv.close();
  });

  it('lists every kind at start, as plain JSON with apiVersion and kind set', async () => {
    await watch.start();
    assert.equal(watch.synced, true);
    assert.deepEqual(watch.objects().map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.name}`).sort(), [
      'gateway.networking.k8s.io/v1 HTTPRoute web',
      'v1 Namespace shop',
      'v1 Node node-1',
      'v1 Pod web-1',
      'v1 Service web',
    ]);
    assert.equal(typeof find('Pod', 'web-1')!.metadata.creationTimestamp, 'string');
    assert.equal(find('Pod', 'web-1')!.metadata.managedFields, undefined, 'managedFields is not kept');
    assert.equal(changes, 0);
  });

  it('delivers a pod created, relabelled and deleted within a second, debounced into few notifications', async () => {
    await watch.start();
    srv.create(pod('web-2'));
    await waitFor('web-2 added', () => find('Pod', 'web-2') !== undefined && changes > 0);
    assert.equal(find('Pod', 'web-2')!.kind, 'Pod');
    assert.equal(find('Pod', 'web-2')!.metadata.managedFields, undefined, 'managedFields is not kept from watch events either');

    const before = changes;
    srv.update(pod('web-2', { app: 'web', version: 'v2' }));
    await waitFor('web-2 relabelled', () => (labelsOf('web-2') as Record<string, string>)?.version === 'v2' && changes > before);

    srv.remove(pod('web-2'));
    await waitFor('web-2 deleted', () => find('Pod', 'web-2') === undefined);

    const burst = changes;
    for (let i = 0; i < 20; i++) srv.create(pod(`burst-${i}`));
    await waitFor('burst seen', () => watch.objects().filter((o) => o.metadata.name.startsWith('burst-')).length === 20);
    await sleep(50);
    assert.ok(changes - burst <= 3, `20 creations in one go made ${changes - burst} notifications`);
  });

  it('resumes a broken or server-closed watch from where it was: changes made meanwhile arrive, without a relist', async () => {
    await watch.start();
    const lists = srv.listRequests('/api/v1/pods');
    srv.dropWatches();
    srv.update(pod('web-1', { app: 'web', during: 'outage' }));
    await waitFor('change made while the watch was broken', () => (labelsOf('web-1') as Record<string, string>)?.during === 'outage');

    await waitFor('watches back', () => srv.openWatches === WATCHED_KINDS.length);
    srv.dropWatches({ graceful: true });
    srv.create(pod('web-3'));
    await waitFor('change made while the watch was closed', () => find('Pod', 'web-3') !== undefined);
    assert.equal(srv.listRequests('/api/v1/pods'), lists);
  });

  it('relists after 410 Expired: a pod deleted while disconnected and compacted away is gone', async () => {
    await watch.start();
    srv.create(pod('web-2'));
    await waitFor('web-2 added', () => find('Pod', 'web-2') !== undefined);
    const lists = srv.listRequests('/api/v1/pods');
    const seen = changes;

    srv.dropWatches();
    srv.remove(pod('web-2'));
    srv.update(pod('web-1', { app: 'web', after: 'gap' }));
    srv.compact();

    await waitFor('web-2 gone after the relist', () => find('Pod', 'web-2') === undefined);
    await waitFor('web-1 relabelled after the relist', () => (labelsOf('web-1') as Record<string, string>)?.after === 'gap');
    assert.ok(srv.listRequests('/api/v1/pods') > lists, 'pods were relisted');
    await waitFor('change reported', () => changes > seen);
    assert.ok(find('Service', 'web'), 'other kinds keep their objects');
  });

  it('is not disturbed by bookmarks, and resumes correctly from a bookmark resourceVersion', async () => {
    await watch.start();
    await waitFor('every watch open', () => srv.openWatches === WATCHED_KINDS.length);
    const before = JSON.stringify(watch.objects());
    srv.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: 'shop' } });
    assert.equal(srv.bookmark(), WATCHED_KINDS.length, 'every watch asked for bookmarks');
    await sleep(100);
    assert.equal(JSON.stringify(watch.objects()), before);
    assert.equal(changes, 0);

    const lists = srv.listRequests('/api/v1/pods');
    srv.dropWatches();
    srv.create(pod('after-bookmark'));
    await waitFor('pod created after the bookmark', () => find('Pod', 'after-bookmark') !== undefined);
    assert.equal(srv.listRequests('/api/v1/pods'), lists);
  });

  it('asks the server to end each watch after 5 to 10 minutes, as client-go does', async () => {
    await watch.start();
    await waitFor('every watch open', () => srv.openWatches === WATCHED_KINDS.length);
    const { timeoutSeconds } = srv.watchParameters();
    assert.equal(timeoutSeconds.length, WATCHED_KINDS.length);
    assert.ok(timeoutSeconds.every((t) => t >= 300 && t < 600), String(timeoutSeconds));
  });

  it('replaces a watch that went silent on a dead connection: the change made meanwhile arrives, without a relist', async () => {
    const quick = new KubeWatch({ kubeConfig: srv.kubeConfig(), log: logs.log, onChange: () => {}, watchTimeoutSeconds: 1 });
    try {
      await quick.start();
      await waitFor('every watch open', () => srv.openWatches === WATCHED_KINDS.length);
      const lists = srv.listRequests('/api/v1/pods');
      srv.stallWatches();
      srv.update(pod('web-1', { app: 'web', during: 'stall' }));
      await waitFor('the change after the stalled watch was cut', () => (quick.objects().find((o) => o.metadata.name === 'web-1')?.metadata.labels as Record<string, string>)?.during === 'stall', 4000);
      assert.ok(logs.lines.some((l) => l.level === 40 && /outlived its timeout/.test(String(l.msg))), 'the cut watch is logged');
      assert.equal(srv.listRequests('/api/v1/pods'), lists);
    } finally {
      quick.stop();
    }
  });

  it('restarts an informer whose watch request fails, with backoff', async () => {
    await watch.start();
    srv.failNext('/api/v1/pods', 500);
    srv.failNext('/api/v1/pods', 503);
    srv.failNext('/api/v1/services', 403);
    srv.dropWatches();
    srv.create(pod('web-4'));
    await waitFor('web-4 after two failed attempts', () => find('Pod', 'web-4') !== undefined);
    assert.ok(logs.lines.some((l) => l.kind === 'Pod' && String(l.err) === '503 Service Unavailable'), 'the failure is logged');
    const denied = logs.lines.find((l) => l.kind === 'Service' && l.level === 40);
    assert.match(String(denied?.msg), /needs list and watch on services/);
  });

  it('skips a kind whose CRD is not installed with one warning, and picks it up once installed', async () => {
    srv.uninstall('nodemesh.io/v1alpha1', 'FaultInjection');
    await watch.start();
    assert.equal(watch.synced, true);
    assert.ok(find('Pod', 'web-1'));
    await sleep(300);
    const warnings = logs.lines.filter((l) => l.level === 40 && l.kind === 'FaultInjection');
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]!.msg), /FaultInjection \(nodemesh\.io\/v1alpha1\) is not served by the Kubernetes API: is its CRD installed\?/);

    srv.create(pod('web-5'));
    await waitFor('other kinds keep working', () => find('Pod', 'web-5') !== undefined);

    srv.install('nodemesh.io/v1alpha1', 'FaultInjection');
    srv.create(fault('slow'));
    await waitFor('FaultInjection picked up', () => find('FaultInjection', 'slow') !== undefined);
    srv.create(fault('slower'));
    await waitFor('and watched', () => find('FaultInjection', 'slower') !== undefined);
  });

  it('drops the objects of a CRD that is uninstalled while watched', async () => {
    srv.create(fault('slow'));
    await watch.start();
    assert.ok(find('FaultInjection', 'slow'));
    const seen = changes;
    srv.uninstall('nodemesh.io/v1alpha1', 'FaultInjection');
    await waitFor('FaultInjection gone', () => find('FaultInjection', 'slow') === undefined && changes > seen);
    await waitFor('the missing kind is reported', () => logs.lines.some((l) => l.level === 40 && l.kind === 'FaultInjection'));
  });

  it('stops: no more notifications, no watch left open', async () => {
    await watch.start();
    watch.stop();
    srv.create(pod('late'));
    await sleep(100);
    assert.equal(changes, 0);
    assert.equal(srv.openWatches, 0);
  });
});
