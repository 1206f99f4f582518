import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { memoryLogger, podsState } from '../testing/mesh.js';
import { nodeMayHold } from './authz-rule.js';
import { MeshCA } from './ca.js';
import { CertStore } from './cert-store.js';
import { CertManager, type CertManagerOptions, type IdentityStatus, type Signer } from './cert-manager.js';
import { testKey, tmpDir } from '../testing/pki.js';
import { createCsr } from './x509.js';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const API = 'spiffe://cluster.local/ns/shop/sa/api';
const NODE_ID = 'spiffe://cluster.local/ns/nodemesh-system/sa/nodemesh-agent';
const state = podsState([
  { namespace: 'shop', name: 'web-1', nodeName: 'n1', serviceAccount: 'web' },
  { namespace: 'shop', name: 'api-1', nodeName: 'n1', serviceAccount: 'api' },
]);
const ca = MeshCA.loadOrCreate({ dir: tmpDir(), trustDomain: TD, log: memoryLogger().log });

/** The control plane, in process: signs for n1 what the mesh state allows; can be made to fail. */
function controlPlane() {
  const cp = { down: false, calls: 0 };
  const signer: Signer = async (csrPem, ttlSeconds) => {
    cp.calls++;
    if (cp.down) throw new Error('connect ECONNREFUSED 10.96.0.1:15012');
    return ca.sign({ node: 'n1', csrPem, ttlSeconds, authorize: (node, id) => nodeMayHold(state, node, id) });
  };
  return Object.assign(cp, { signer });
}

const managers: CertManager[] = [];
afterEach(() => managers.splice(0).forEach((m) => m.stop()));
const manager = (opts: Partial<CertManagerOptions> & Pick<CertManagerOptions, 'signer'>) => {
  const { log, lines } = memoryLogger();
  const m = new CertManager({ node: 'n1', trustDomain: TD, log, retryBaseMs: 100, retryMaxMs: 200, ...opts });
  managers.push(m);
  return { m, lines };
};
const statusOf = (m: CertManager, identity: string): IdentityStatus | undefined => m.status().find((s) => s.identity === identity);

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await sleep(20);
  }
}

describe('CertManager', () => {
  it('always holds the node identity, with the node name as DNS SAN', async () => {
    const { m } = manager({ signer: controlPlane().signer });
    m.setIdentities([]);
    const creds = await m.ready(NODE_ID, 5000);
    assert.equal(m.nodeCredentials()?.serial, creds.serial);
    const leaf = new X509Certificate(creds.cert);
    assert.equal(leaf.subjectAltName, `URI:${NODE_ID}, DNS:n1`);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(creds.key)));
    assert.equal(creds.ca, ca.rootPem);
    assert.deepEqual(m.status().map((s) => [s.identity, s.state]), [[NODE_ID, 'valid']]);
  });

  it('renews at half life: a new serial, onRotate fires, the old certificate is replaced', async () => {
    const { m } = manager({ signer: controlPlane().signer, lifetimeSeconds: 4 });
    const rotated: string[] = [];
    m.onRotate((id) => rotated.push(id));
    m.setIdentities([WEB]);
    const first = await m.ready(WEB, 5000);
    const issuedAt = Date.now();
    // The CA back-dates by 60 s for clock skew and keeps whole seconds.
    assert.equal(first.notAfter.getTime() - first.notBefore.getTime(), (4 + 60) * 1000);
    const left = first.notAfter.getTime() - issuedAt;
    assert.ok(left > 2500 && left <= 4000, `${left} ms left of 4 s`);
    assert.equal(m.credentials(WEB)?.serial, first.serial);

    await until('renewal', () => m.credentials(WEB)?.serial !== first.serial, 6000);
    const renewedAfter = Date.now() - issuedAt;
    assert.ok(renewedAfter > 1000 && renewedAfter < 3500, `renewed after ${renewedAfter} ms, half life is 2000`);
    assert.deepEqual(rotated.filter((id) => id === WEB), [WEB, WEB]);
    assert.equal(statusOf(m, WEB)?.state, 'valid');
  });

  it('keeps the current certificate while renewal fails, shows the error, and recovers', async () => {
    const cp = controlPlane();
    const { m, lines } = manager({ signer: cp.signer, lifetimeSeconds: 4 });
    m.setIdentities([WEB]);
    const first = await m.ready(WEB, 5000);
    cp.down = true;

    await until('a failed renewal', () => statusOf(m, WEB)?.lastError !== undefined, 4000);
    const failing = statusOf(m, WEB)!;
    assert.equal(failing.state, 'renewing');
    assert.equal(failing.lastError, 'connect ECONNREFUSED 10.96.0.1:15012');
    assert.equal(failing.serial, first.serial);
    assert.equal(m.credentials(WEB)?.serial, first.serial, 'old certificate still served');
    assert.ok(lines.some((l) => l['level'] === 40 && String(l['msg']).startsWith(`renewing the certificate of ${WEB} failed; still using serial ${first.serial}`)));
    const callsWhileDown = cp.calls;
    await sleep(500);
    assert.ok(cp.calls > callsWhileDown, 'retries with backoff');

    cp.down = false;
    await until('recovery', () => statusOf(m, WEB)?.state === 'valid', 2000);
    assert.notEqual(m.credentials(WEB)?.serial, first.serial);
    assert.equal(statusOf(m, WEB)?.lastError, undefined);
  });

  it('reports failed, and ready() times out with the last error, when the control plane never answers', async () => {
    const cp = controlPlane();
    cp.down = true;
    const { m } = manager({ signer: cp.signer });
    m.setIdentities([WEB]);
    // Key generation comes first and may take a while on a loaded machine: wait for the failure.
    await until('the first failed request', () => statusOf(m, WEB)?.lastError !== undefined, 5000);
    await assert.rejects(m.ready(WEB, 100), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'NM_ERR_IDENTITY_NOT_READY');
      assert.equal(err.message, `no certificate for ${WEB} after 100 ms; last error: connect ECONNREFUSED 10.96.0.1:15012`);
      return true;
    });
    assert.equal(statusOf(m, WEB)?.state, 'failed');
    assert.equal(m.credentials(WEB), undefined);
    cp.down = false;
    await m.ready(WEB, 5000);
  });

  it('a certificate the CA refuses shows as failed with the reason', async () => {
    const { m } = manager({ signer: controlPlane().signer });
    m.setIdentities(['spiffe://cluster.local/ns/shop/sa/db']);
    await until('refusal', () => statusOf(m, 'spiffe://cluster.local/ns/shop/sa/db')?.state === 'failed', 5000);
    assert.match(statusOf(m, 'spiffe://cluster.local/ns/shop/sa/db')!.lastError!, /no pod on node n1 runs as service account shop\/db/);
  });

  it('refuses an answer that does not match its CSR', async () => {
    const cp = controlPlane();
    const { m } = manager({
      signer: (_csr, ttl) => cp.signer(createCsr({ uris: [API], privateKey: testKey(0) }), ttl),
    });
    m.setIdentities([WEB]);
    await until('bad answer', () => statusOf(m, WEB)?.lastError !== undefined, 5000);
    assert.match(statusOf(m, WEB)!.lastError!, /certificate issued for .*sa\/web: it does not match the key of our CSR/);
  });

  it('drops identities no longer listed and rejects those of another trust domain', async () => {
    const { m } = manager({ signer: controlPlane().signer });
    m.setIdentities([WEB, API]);
    await Promise.all([m.ready(WEB, 5000), m.ready(API, 5000)]);
    m.setIdentities([API]);
    assert.deepEqual(m.status().map((s) => s.identity).sort(), [NODE_ID, API]);
    assert.equal(m.credentials(WEB), undefined);
    await assert.rejects(m.ready(WEB, 100), /was not requested/);
    assert.throws(() => m.setIdentities(['spiffe://other.example/ns/shop/sa/web']), /not in this mesh's trust domain cluster.local/);
    assert.throws(() => m.setIdentities(['web']), { code: 'NM_ERR_IDENTITY_SPIFFE_ID' });
    assert.deepEqual(m.status().map((s) => s.identity).sort(), [NODE_ID, API], 'a rejected call changes nothing');
  });

  it('restarted with the control plane down, serves the stored certificates that are still valid', async () => {
    const store = new CertStore(tmpDir());
    const first = manager({ signer: controlPlane().signer, store }).m;
    first.setIdentities([WEB, API]);
    const [web] = await Promise.all([first.ready(WEB, 5000), first.ready(API, 5000)]);
    first.setIdentities([WEB]);
    first.stop();
    for (const f of readdirSync(store.dir)) assert.equal(statSync(`${store.dir}/${f}`).mode & 0o777, 0o600);

    const cp = controlPlane();
    cp.down = true;
    const { m, lines } = manager({ signer: cp.signer, store });
    m.setIdentities([WEB, API]);
    assert.equal(m.credentials(WEB)?.serial, web.serial, 'the stored certificate is used at once');
    assert.equal(m.credentials(API), undefined, 'a dropped identity left no file behind');
    await until('a request for the missing identity', () => statusOf(m, API)?.state === 'failed', 5000);
    assert.ok(lines.some((l) => l.msg === `using the stored certificate of ${WEB}`));
  });
});
