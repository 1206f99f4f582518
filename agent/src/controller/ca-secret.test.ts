import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { NodemeshError } from '../errors.js';
import { KubeApiServer } from '../testing/kube-api-server.js';
import { memoryLogger } from '../testing/mesh.js';
import { CA_CERT_FILE, CA_KEY_FILE } from '../identity/ca.js';
import { loadOrCreateMeshCA, publishRootCert, ROOT_CERT_KEY } from './ca-secret.js';

const caTempDirs = (): string[] => readdirSync(tmpdir()).filter((f) => f.startsWith('nodemesh-ca-'));
const secretRef = (name: string) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'nodemesh' } });

describe('mesh CA in a Kubernetes Secret', () => {
  let srv: KubeApiServer;
  const { log, lines } = memoryLogger();
  const opts = (name: string) => ({ kubeConfig: srv.kubeConfig(), namespace: 'nodemesh', name, trustDomain: 'cluster.local', log });
  const tempBefore = caTempDirs();

  before(async () => {
    srv = await KubeApiServer.start();
  });
  after(() => srv.close());

  it('creates the root once, stores it as an Opaque Secret, and every later start uses it', async () => {
    const first = await loadOrCreateMeshCA(opts('nodemesh-ca'));
    const secret = srv.get(secretRef('nodemesh-ca'));
    assert.equal(secret.type, 'Opaque');
    assert.equal(Buffer.from(secret.data[CA_CERT_FILE], 'base64').toString(), first.rootPem);
    assert.match(Buffer.from(secret.data[CA_KEY_FILE], 'base64').toString(), /-----BEGIN PRIVATE KEY-----/);

    const second = await loadOrCreateMeshCA(opts('nodemesh-ca'));
    assert.equal(second.rootPem, first.rootPem);
    assert.equal(srv.get(secretRef('nodemesh-ca')).metadata.resourceVersion, secret.metadata.resourceVersion, 'the Secret was not rewritten');
    assert.deepEqual(caTempDirs(), tempBefore, 'no CA key left in a temporary directory');
  });

  it('uses the root of the replica that stored it first when its own POST gets 409', async () => {
    const winner = await loadOrCreateMeshCA(opts('raced-ca'));
    // This replica's GET ran before the winner's POST landed: it saw 404 and made its own root.
    srv.failNext('/api/v1/namespaces/nodemesh/secrets/raced-ca', 404);
    const loser = await loadOrCreateMeshCA(opts('raced-ca'));
    assert.equal(loser.rootPem, winner.rootPem);
    assert.ok(lines.some((l) => /^another controller replica created the mesh CA first; using the one in Secret nodemesh\/raced-ca$/.test(String(l.msg))));

    const [a, b] = await Promise.all([loadOrCreateMeshCA(opts('together-ca')), loadOrCreateMeshCA(opts('together-ca'))]);
    assert.equal(a.rootPem, b.rootPem);
    assert.deepEqual(caTempDirs(), tempBefore);
  });

  it('refuses a Secret without both PEM files, naming it and what is missing', async () => {
    srv.create({ ...secretRef('half-ca'), data: { [CA_CERT_FILE]: Buffer.from('x').toString('base64') } });
    await assert.rejects(loadOrCreateMeshCA(opts('half-ca')), (err: NodemeshError) => {
      assert.equal(err.code, 'NM_ERR_KUBE_CA_SECRET');
      assert.match(err.message, /^Secret nodemesh\/half-ca has no ca-key\.pem in its data/);
      return true;
    });
  });

  it('says which RBAC is missing when the Secret cannot be read', async () => {
    srv.failNext('/api/v1/namespaces/nodemesh/secrets/nodemesh-ca', 403);
    await assert.rejects(loadOrCreateMeshCA(opts('nodemesh-ca')), /^NodemeshError: cannot read Secret nodemesh\/nodemesh-ca: 403 .*RBAC get and create on secrets/);
  });
});

describe('publishRootCert', () => {
  it('creates the ConfigMap, leaves it alone when unchanged, replaces it when the root changes', async () => {
    const srv = await KubeApiServer.start();
    try {
      const kc = srv.kubeConfig();
      const ref = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'nodemesh-root', namespace: 'nodemesh' } };
      await publishRootCert(kc, 'nodemesh', 'nodemesh-root', 'ROOT-1');
      const created = srv.get(ref);
      assert.deepEqual(created.data, { [ROOT_CERT_KEY]: 'ROOT-1' });

      await publishRootCert(kc, 'nodemesh', 'nodemesh-root', 'ROOT-1');
      assert.equal(srv.get(ref).metadata.resourceVersion, created.metadata.resourceVersion);

      await publishRootCert(kc, 'nodemesh', 'nodemesh-root', 'ROOT-2');
      assert.deepEqual(srv.get(ref).data, { [ROOT_CERT_KEY]: 'ROOT-2' });
      assert.equal(srv.get(ref).metadata.uid, created.metadata.uid);

      srv.failNext('/api/v1/namespaces/nodemesh/configmaps/nodemesh-root', 403);
      await assert.rejects(publishRootCert(kc, 'nodemesh', 'nodemesh-root', 'ROOT-3'), (err: NodemeshError) => {
        assert.equal(err.code, 'NM_ERR_KUBE_ROOT_CONFIGMAP');
        assert.match(err.message, /^cannot read ConfigMap nodemesh\/nodemesh-root: 403 .*RBAC get, create and update on configmaps in nodemesh/);
        return true;
      });
    } finally {
      await srv.close();
    }
  });
});
