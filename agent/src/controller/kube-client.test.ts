import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodemeshError } from '../errors.js';
import { KubeApiServer } from '../testing/kube-api-server.js';
import { getJson, KubeApiError, loadKubeConfig, tokenReviewer, type TokenVerdict } from './kube-client.js';

const AGENT = 'system:serviceaccount:nodemesh:nodemesh-agent';
const POD_NAME = 'authentication.kubernetes.io/pod-name';
const POD_UID = 'authentication.kubernetes.io/pod-uid';
const NODE_NAME = 'authentication.kubernetes.io/node-name';
const reason = (v: TokenVerdict): string => ('reason' in v ? v.reason : `accepted for node ${v.node}`);

describe('tokenReviewer', () => {
  let srv: KubeApiServer;
  let review: (token: string) => Promise<TokenVerdict>;
  const pods = new Map([['nodemesh/agent-a', { uid: 'uid-a', node: 'node-2' }], ['nodemesh/agent-pending', { uid: 'uid-p', node: undefined }]]);

  before(async () => {
    srv = await KubeApiServer.start();
    const bound = (pod: string, uid: string, node?: string) => ({ [POD_NAME]: [pod], [POD_UID]: [uid], ...(node ? { [NODE_NAME]: [node] } : {}) });
    srv.addToken('by-node', { username: AGENT, audiences: ['nodemesh'], extra: bound('agent-x', 'uid-x', 'node-1') });
    srv.addToken('by-pod', { username: AGENT, audiences: ['nodemesh'], extra: bound('agent-a', 'uid-a') });
    srv.addToken('stale-pod', { username: AGENT, audiences: ['nodemesh'], extra: bound('agent-a', 'uid-old') });
    srv.addToken('pending-pod', { username: AGENT, audiences: ['nodemesh'], extra: bound('agent-pending', 'uid-p') });
    srv.addToken('other-sa', { username: 'system:serviceaccount:shop:web', audiences: ['nodemesh'], extra: bound('web-1', 'uid-w', 'node-1') });
    srv.addToken('api-audience', { username: AGENT, extra: bound('agent-x', 'uid-x', 'node-1') });
    srv.addToken('legacy', { username: AGENT, audiences: ['nodemesh'] });
    review = tokenReviewer({
      kubeConfig: srv.kubeConfig(),
      audience: 'nodemesh',
      agentServiceAccount: { namespace: 'nodemesh', name: 'nodemesh-agent' },
      podNode: (ns, name, uid) => {
        const pod = pods.get(`${ns}/${name}`);
        return pod?.uid === uid ? pod.node : undefined;
      },
    });
  });
  after(() => srv.close());

  it('names the node from the node-name the API server attests', async () => {
    assert.deepEqual(await review('by-node'), { node: 'node-1' });
  });

  it('names the node of the pod the token is bound to when the API server is older (no node-name)', async () => {
    assert.deepEqual(await review('by-pod'), { node: 'node-2' });
  });

  it('refuses, saying why: another service account, another audience, an unknown token', async () => {
    assert.deepEqual(await review('other-sa'), {
      reason: `token belongs to system:serviceaccount:shop:web, not to the agent service account ${AGENT}`,
    });
    assert.match(reason(await review('api-audience')), /^token not authenticated by the Kubernetes API: .*token audiences \["https:\/\/kubernetes\.default\.svc\.cluster\.local"\] is invalid for the target audiences \["nodemesh"\]/);
    assert.match(reason(await review('not-a-token')), /^token not authenticated by the Kubernetes API: \[invalid bearer token/);
  });

  it('refuses a token whose pod is unknown, replaced (uid) or on no node, and one bound to no pod', async () => {
    assert.deepEqual(await review('stale-pod'), {
      reason: 'token is bound to pod nodemesh/agent-a (uid uid-old), which is not a known pod with that uid scheduled on a node',
    });
    assert.match(reason(await review('pending-pod')), /pod nodemesh\/agent-pending \(uid uid-p\), which is not a known pod/);
    assert.match(reason(await review('legacy')), /is not bound to a pod .*projected service-account token/);
  });

  it('marks a refusal because the API could not be asked, with the RBAC hint on 403', async () => {
    srv.failNext('/apis/authentication.k8s.io/v1/tokenreviews', 403);
    const verdict = await review('by-node');
    assert.equal((verdict as { unavailable?: boolean }).unavailable, true);
    assert.match(reason(verdict), /^TokenReview request failed: 403 injected failure .*RBAC create on tokenreviews/);
  });
});

describe('loadKubeConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nodemesh-kubeconfig-'));
  const env = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    if (env.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    else process.env.KUBERNETES_SERVICE_HOST = env.host;
    if (env.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
    else process.env.KUBERNETES_SERVICE_PORT = env.port;
  });

  it('loads a kubeconfig file', () => {
    const file = join(dir, 'config');
    writeFileSync(
      file,
      `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://10.0.0.1:6443", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: abc } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`,
    );
    assert.equal(loadKubeConfig(file).getCurrentCluster()?.server, 'https://10.0.0.1:6443');
  });

  it('names the file that cannot be loaded', () => {
    assert.throws(() => loadKubeConfig(join(dir, 'missing')), (err: NodemeshError) => {
      assert.equal(err.code, 'NM_ERR_KUBE_CONFIG');
      assert.match(err.message, /^cannot load kubeconfig .*missing: /);
      return true;
    });
  });

  it('uses the pod service account in a cluster, and says what is missing outside one', () => {
    delete process.env.KUBERNETES_SERVICE_HOST;
    assert.throws(() => loadKubeConfig(undefined, dir), (err: NodemeshError) => {
      assert.equal(err.code, 'NM_ERR_KUBE_CONFIG');
      assert.match(err.message, /KUBERNETES_SERVICE_HOST\/PORT are not set\); pass --kubeconfig/);
      return true;
    });
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    assert.throws(() => loadKubeConfig(undefined, dir), /serviceaccount\/token does not exist/);
    const saDir = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(saDir, { recursive: true });
    writeFileSync(join(saDir, 'token'), 'token');
    assert.equal(loadKubeConfig(undefined, dir).getCurrentCluster()?.server, 'https://10.96.0.1:443');
  });
});

describe('getJson', () => {
  it('returns the JSON as sent, and the Status message and code on failure', async () => {
    const srv = await KubeApiServer.start();
    try {
      srv.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
      const list = (await getJson(srv.kubeConfig(), '/api/v1/namespaces')) as { items: Array<{ metadata: { creationTimestamp: unknown } }> };
      assert.equal(typeof list.items[0]!.metadata.creationTimestamp, 'string');
      await assert.rejects(getJson(srv.kubeConfig(), '/apis/example.com/v1/widgets'), (err: KubeApiError) => {
        assert.equal(err.code, 'NM_ERR_KUBE_API');
        assert.equal(err.status, 404);
        assert.equal(err.message, 'GET /apis/example.com/v1/widgets: 404 the server could not find the requested resource');
        return true;
      });
    } finally {
      await srv.close();
    }
  });
});
