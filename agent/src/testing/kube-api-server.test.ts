import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiException, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { KubeApiServer } from './kube-api-server.js';

let srv: KubeApiServer;
before(async () => {
  srv = await KubeApiServer.start();
});
after(() => srv.close());

const pod = (name: string, labels: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', labels },
  spec: { nodeName: 'node-1', containers: [{ name: 'app' }] },
});

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(srv.url + path);
  return { status: res.status, body: await res.json() };
}

/** Reads a watch until it ends or `count` lines arrived. */
async function watchLines(path: string, count: number): Promise<any[]> {
  const res = await fetch(srv.url + path);
  assert.equal(res.status, 200);
  const lines: any[] = [];
  let buffered = '';
  const reader = res.body!.getReader();
  while (lines.length < count) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += Buffer.from(value).toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)));
      buffered = buffered.slice(nl + 1);
    }
  }
  await reader.cancel();
  return lines;
}

describe('Kubernetes API server double', () => {
  it('lists like the real server: typed list kind, resourceVersion, built-in items without apiVersion/kind', async () => {
    const created = srv.create(pod('list-a'));
    assert.match(created.metadata.uid, /^[0-9a-f-]{36}$/);
    assert.match(created.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    srv.create({ apiVersion: 'nodemesh.io/v1alpha1', kind: 'FaultInjection', metadata: { name: 'f', namespace: 'shop' }, spec: {} });

    const pods = await get('/api/v1/namespaces/shop/pods');
    assert.equal(pods.status, 200);
    assert.equal(pods.body.kind, 'PodList');
    assert.equal(pods.body.apiVersion, 'v1');
    assert.equal(pods.body.metadata.resourceVersion, String(srv.resourceVersion));
    const item = pods.body.items.find((p: any) => p.metadata.name === 'list-a');
    assert.equal(item.kind, undefined);
    assert.equal(item.metadata.resourceVersion, created.metadata.resourceVersion);

    const faults = await get('/apis/nodemesh.io/v1alpha1/faultinjections');
    assert.equal(faults.body.kind, 'FaultInjectionList');
    assert.equal(faults.body.items[0].kind, 'FaultInjection');
  });

  it('answers errors with Status objects: 404 NotFound, 409 AlreadyExists, 409 Conflict on a stale resourceVersion', async () => {
    const missing = await get('/api/v1/namespaces/shop/pods/nope');
    assert.deepEqual(missing, {
      status: 404,
      body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'pods "nope" not found', reason: 'NotFound', details: { name: 'nope', kind: 'pods' }, code: 404 },
    });
    assert.equal((await get('/apis/example.com/v1/widgets')).body.message, 'the server could not find the requested resource');

    const core = srv.kubeConfig().makeApiClient(CoreV1Api);
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: '1' } };
    const first = await core.createNamespacedConfigMap({ namespace: 'shop', body });
    assert.equal(first.metadata?.namespace, 'shop');
    await assert.rejects(core.createNamespacedConfigMap({ namespace: 'shop', body }), (err: ApiException<string>) => {
      assert.equal(err.code, 409);
      assert.equal(JSON.parse(err.body).reason, 'AlreadyExists');
      return true;
    });
    const stale = { ...body, metadata: { ...body.metadata, resourceVersion: '1' } };
    await assert.rejects(core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'c', body: stale }), (err: ApiException<string>) => {
      assert.equal(err.code, 409);
      assert.equal(JSON.parse(err.body).reason, 'Conflict');
      return true;
    });
    const replaced = await core.replaceNamespacedConfigMap({ namespace: 'shop', name: 'c', body: { ...body, data: { a: '2' } } });
    assert.equal(replaced.data?.a, '2');
    assert.equal(replaced.metadata?.uid, first.metadata?.uid);
  });

  it('serves custom resources through CustomObjectsApi and folds Secret stringData into data', async () => {
    const custom = srv.kubeConfig().makeApiClient(CustomObjectsApi);
    const group = 'security.istio.io';
    const body = { apiVersion: `${group}/v1`, kind: 'AuthorizationPolicy', metadata: { name: 'deny' }, spec: { action: 'DENY' } };
    await custom.createNamespacedCustomObject({ group, version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', body });
    const got = await custom.getNamespacedCustomObject({ group, version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', name: 'deny' });
    assert.equal(got.spec.action, 'DENY');
    await custom.deleteNamespacedCustomObject({ group, version: 'v1', namespace: 'shop', plural: 'authorizationpolicies', name: 'deny' });

    srv.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'shop' }, stringData: { token: 'abc' } });
    const secret = srv.get({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'shop' } });
    assert.deepEqual(secret.data, { token: Buffer.from('abc').toString('base64') });
    assert.equal(secret.stringData, undefined);
  });

  it('watches from a resourceVersion: later events in order, with the DELETED object at its deletion version', async () => {
    const from = srv.resourceVersion;
    srv.create(pod('w1'));
    srv.update(pod('w1', { v: '2' }));
    srv.remove(pod('w1'));
    const events = await watchLines(`/api/v1/pods?watch=true&resourceVersion=${from}`, 3);
    assert.deepEqual(
      events.map((e) => [e.type, e.object.kind, e.object.metadata.name, Number(e.object.metadata.resourceVersion)]),
      [
        ['ADDED', 'Pod', 'w1', from + 1],
        ['MODIFIED', 'Pod', 'w1', from + 2],
        ['DELETED', 'Pod', 'w1', from + 3],
      ],
    );
  });

  it('answers a watch from before a compaction with one ERROR event carrying 410 Expired, then ends it', async () => {
    const old = srv.resourceVersion;
    srv.create(pod('c1'));
    srv.compact();
    const events = await watchLines(`/api/v1/pods?watch=true&resourceVersion=${old}`, 10);
    assert.deepEqual(events, [
      {
        type: 'ERROR',
        object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${old} (${srv.resourceVersion})`, reason: 'Expired', code: 410 },
      },
    ]);
  });

  it('sends BOOKMARK events (kind, apiVersion, metadata.resourceVersion only) to watches that allow them', async () => {
    const lines = watchLines(`/api/v1/nodes?watch=true&resourceVersion=${srv.resourceVersion}&allowWatchBookmarks=true`, 1);
    while (srv.openWatches === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(srv.bookmark(), 1);
    assert.deepEqual(await lines, [{ type: 'BOOKMARK', object: { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: String(srv.resourceVersion) } } }]);
  });

  it('reviews tokens as the service-account authenticator does, audiences included', async () => {
    srv.addToken('t1', { username: 'system:serviceaccount:nodemesh:agent', audiences: ['nodemesh'], extra: { 'authentication.kubernetes.io/node-name': ['node-1'] } });
    const review = async (token: string, audiences?: string[]) => {
      const res = await fetch(`${srv.url}/apis/authentication.k8s.io/v1/tokenreviews`, {
        method: 'POST',
        body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } }),
      });
      assert.equal(res.status, 201);
      return ((await res.json()) as any).status;
    };
    assert.deepEqual(await review('t1', ['other', 'nodemesh']), {
      authenticated: true,
      user: { username: 'system:serviceaccount:nodemesh:agent', groups: ['system:authenticated'], extra: { 'authentication.kubernetes.io/node-name': ['node-1'] } },
      audiences: ['nodemesh'],
    });
    assert.deepEqual(await review('t1'), {
      user: {},
      error: '[invalid bearer token, token audiences ["nodemesh"] is invalid for the target audiences ["https://kubernetes.default.svc.cluster.local"]]',
    });
    assert.equal((await review('unknown', ['nodemesh'])).authenticated, undefined);
  });

  it('fails the next request of a path on demand and counts list requests', async () => {
    const lists = srv.listRequests('/api/v1/services');
    srv.failNext('/api/v1/services', 503);
    assert.equal((await get('/api/v1/services')).body.reason, 'ServiceUnavailable');
    assert.equal((await get('/api/v1/services')).status, 200);
    assert.equal(srv.listRequests('/api/v1/services'), lists + 1);
  });
});
