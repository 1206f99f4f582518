import assert from 'node:assert/strict';
import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { memoryLogger, podsState } from '../testing/mesh.js';
import { nodeMayHold } from './authz-rule.js';
import { MeshCA, type SignRequest } from './ca.js';
import { makeCa, pemOf, testKey, tmpDir } from '../testing/pki.js';
import { createCsr, pemCertificates } from './x509.js';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const NODE_ID = 'spiffe://cluster.local/ns/nodemesh-system/sa/nodemesh-agent';
const state = podsState([
  { namespace: 'shop', name: 'web-1', nodeName: 'n1', serviceAccount: 'web' },
  { namespace: 'shop', name: 'db-1', nodeName: 'n2', serviceAccount: 'db' },
]);
const authorize: SignRequest['authorize'] = (node, id) => nodeMayHold(state, node, id);

const newCa = () => {
  const { log, lines } = memoryLogger();
  const dir = tmpDir();
  return { ca: MeshCA.loadOrCreate({ dir, trustDomain: TD, log }), dir, lines, log };
};

const write = (dir: string, cert: string, key: string) => {
  fs.writeFileSync(path.join(dir, 'ca-cert.pem'), cert);
  fs.writeFileSync(path.join(dir, 'ca-key.pem'), key, { mode: 0o600 });
};

const loadError = (dir: string): string => {
  try {
    MeshCA.loadOrCreate({ dir, trustDomain: TD, log: memoryLogger().log });
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'NM_ERR_IDENTITY_CA_LOAD');
    return (err as Error).message;
  }
  return assert.fail('the CA loaded');
};

describe('MeshCA: root of trust', () => {
  it('creates a root once, with a 0600 key, and loads the same root on the next start', () => {
    const { ca, dir, lines, log } = newCa();
    assert.equal(fs.statSync(path.join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
    const root = new X509Certificate(ca.rootPem);
    assert.ok(root.ca);
    assert.equal(root.subject, 'O=nodemesh\nCN=nodemesh root cluster.local');
    assert.ok(root.verify(root.publicKey));
    const years = (Date.parse(root.validTo) - Date.now()) / (365.25 * 86400e3);
    assert.ok(years > 9.9 && years < 10.01, `root valid for ${years} years`);
    assert.ok(lines.some((l) => String(l['msg']).startsWith('created mesh CA root')));

    const again = MeshCA.loadOrCreate({ dir, trustDomain: TD, log });
    assert.equal(again.rootPem, ca.rootPem);
    assert.ok(lines.some((l) => l['msg'] === 'loaded mesh CA'));
  });

  it('uses a user-supplied intermediate CA and serves its chain, the root being the trust anchor', () => {
    const root = makeCa({ cn: 'corp root', key: testKey(1) });
    const intermediate = makeCa({ cn: 'corp mesh intermediate', key: testKey(2), issuer: root });
    const dir = tmpDir();
    write(dir, intermediate.certPem + root.certPem, intermediate.keyPem);
    const ca = MeshCA.loadOrCreate({ dir, trustDomain: TD, log: memoryLogger().log });
    assert.equal(new X509Certificate(ca.rootPem).fingerprint256, new X509Certificate(root.certPem).fingerprint256);

    const signed = ca.sign({ node: 'n1', csrPem: createCsr({ uris: [WEB], privateKey: testKey(0) }), ttlSeconds: 3600, authorize });
    const [leaf, inter, ...rest] = pemCertificates(signed.certChainPem).map((p) => new X509Certificate(p));
    assert.equal(rest.length, 0, 'chain is leaf + intermediate, without the root');
    assert.ok(leaf!.verify(inter!.publicKey));
    assert.ok(inter!.verify(new X509Certificate(ca.rootPem).publicKey));
  });

  it('rejects bad CA files with messages that say what to fix', () => {
    const good = makeCa({ cn: 'good', key: testKey(1) });
    const cases: Array<[string, (dir: string) => void, RegExp]> = [
      ['certificate without key', (d) => fs.writeFileSync(path.join(d, 'ca-cert.pem'), good.certPem), /ca-cert.pem exists but .*ca-key.pem does not/],
      ['garbage certificate', (d) => write(d, 'hello', good.keyPem), /no PEM certificate/],
      ['key of another certificate', (d) => write(d, good.certPem, pemOf(testKey(2))), /the key does not belong to the certificate/],
      ['not a CA', (d) => { const leaf = makeCa({ cn: 'leaf', key: testKey(1), ca: false }); write(d, leaf.certPem, leaf.keyPem); }, /CN=leaf is not a CA certificate/],
      ['expired', (d) => { const old = makeCa({ cn: 'old', key: testKey(1), notAfter: new Date(Date.now() - 1000) }); write(d, old.certPem, old.keyPem); }, /the CA certificate expired on/],
      ['encrypted key', (d) => write(d, good.certPem, testKey(1).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }).toString()), /the key is encrypted/],
      ['EC key', (d) => write(d, good.certPem, pemOf(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)), /a ec key; the mesh CA supports RSA keys only/],
      ['chain out of order', (d) => { const i = makeCa({ cn: 'i', key: testKey(2), issuer: good }); write(d, good.certPem + i.certPem, good.keyPem); }, /certificate 1 is not issued by certificate 2/],
    ];
    for (const [name, setup, message] of cases) {
      const dir = tmpDir();
      setup(dir);
      assert.match(loadError(dir), message, name);
    }
  });
});

describe('MeshCA: signing', () => {
  const { ca, lines } = newCa();
  const rootKey = new X509Certificate(ca.rootPem).publicKey;
  const csr = (uris: string[], dnsNames: string[] = []) => createCsr({ uris, dnsNames, privateKey: testKey(0) });
  const refusal = (req: Omit<SignRequest, 'authorize' | 'ttlSeconds'>, code: string): string => {
    try {
      ca.sign({ ...req, ttlSeconds: 3600, authorize });
    } catch (err) {
      assert.equal((err as { code?: string }).code, code, (err as Error).message);
      return (err as Error).message;
    }
    return assert.fail('signed');
  };

  it('signs a workload identity whose pod runs on the node: chains to the root, URI SAN, validity = ttl', () => {
    const before = Date.now();
    const signed = ca.sign({ node: 'n1', csrPem: csr([WEB]), ttlSeconds: 3600, authorize });
    const leaf = new X509Certificate(signed.certChainPem);
    assert.ok(leaf.verify(rootKey));
    assert.ok(leaf.checkIssued(new X509Certificate(ca.rootPem)));
    assert.ok(leaf.checkPrivateKey(testKey(0)));
    assert.equal(leaf.subjectAltName, `URI:${WEB}`);
    assert.equal(leaf.ca, false);
    assert.deepEqual(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.equal(leaf.serialNumber, signed.serial);
    assert.equal(signed.serial.length, 32);
    assert.equal(signed.identity, WEB);
    assert.equal(signed.rootPem, ca.rootPem);
    // X.509 times have whole seconds.
    const notAfter = Date.parse(leaf.validTo);
    const notBefore = Date.parse(leaf.validFrom);
    assert.ok(Math.abs(notAfter - (before + 3600e3)) < 2000, leaf.validTo);
    assert.ok(Math.abs(notBefore - (before - 60e3)) < 2000, leaf.validFrom);
    assert.equal(signed.notAfter.getTime(), notAfter);
  });

  it('gives each certificate a different serial', () => {
    const a = ca.sign({ node: 'n1', csrPem: csr([WEB]), ttlSeconds: 60, authorize });
    const b = ca.sign({ node: 'n1', csrPem: csr([WEB]), ttlSeconds: 60, authorize });
    assert.notEqual(a.serial, b.serial);
  });

  it('refuses an identity with no pod on the requesting node, and logs why', () => {
    const message = refusal({ node: 'n1', csrPem: csr(['spiffe://cluster.local/ns/shop/sa/db']) }, 'NM_ERR_IDENTITY_NOT_AUTHORIZED');
    const expected = 'refused to sign spiffe://cluster.local/ns/shop/sa/db for node n1: no pod on node n1 runs as service account shop/db (pods with it run on n2)';
    assert.equal(message, expected);
    assert.ok(lines.some((l) => l['level'] === 40 && l['msg'] === expected));
  });

  it('refuses CSRs with two URIs, another trust domain, DNS names on a workload, or a bad signature', () => {
    assert.match(refusal({ node: 'n1', csrPem: csr([WEB, 'spiffe://cluster.local/ns/shop/sa/db']) }, 'NM_ERR_IDENTITY_CSR'), /exactly one URI SAN, got 2/);
    assert.match(refusal({ node: 'n1', csrPem: csr([]) }, 'NM_ERR_IDENTITY_CSR'), /exactly one URI SAN, got 0/);
    assert.match(refusal({ node: 'n1', csrPem: csr(['spiffe://evil.example/ns/shop/sa/web']) }, 'NM_ERR_IDENTITY_CSR'), /trust domain evil.example, this CA signs for cluster.local/);
    assert.match(refusal({ node: 'n1', csrPem: csr(['https://example.com/']) }, 'NM_ERR_IDENTITY_CSR'), /is not a workload identity/);
    assert.match(refusal({ node: 'n1', csrPem: csr([WEB], ['n1']) }, 'NM_ERR_IDENTITY_CSR'), /a workload identity carries no DNS SAN/);
    const tampered = csr([WEB]).replace(/^([A-Za-z0-9+/]{40})[A-Za-z0-9+/]/m, (_, head: string) => `${head}${head[0] === 'A' ? 'B' : 'A'}`);
    assert.match(refusal({ node: 'n1', csrPem: tampered }, 'NM_ERR_IDENTITY_CSR'), /signature does not verify|cannot read it/);
  });

  it('signs the node identity only for the requesting node itself, with its name as DNS SAN', () => {
    const signed = ca.sign({ node: 'n1', csrPem: csr([NODE_ID], ['n1']), ttlSeconds: 3600, authorize });
    const leaf = new X509Certificate(signed.certChainPem);
    assert.equal(leaf.subjectAltName, `URI:${NODE_ID}, DNS:n1`);
    assert.equal(leaf.checkHost('n1'), 'n1');
    assert.match(refusal({ node: 'n1', csrPem: csr([NODE_ID], ['n2']) }, 'NM_ERR_IDENTITY_NOT_AUTHORIZED'), /exactly one DNS SAN equal to the requesting node, got \[n2\]/);
    assert.match(refusal({ node: 'n1', csrPem: csr([NODE_ID]) }, 'NM_ERR_IDENTITY_NOT_AUTHORIZED'), /got \[\]/);
    assert.match(refusal({ node: 'n9', csrPem: csr([NODE_ID], ['n9']) }, 'NM_ERR_IDENTITY_NOT_AUTHORIZED'), /node n9 is not in the mesh state/);
  });

  it('never issues past its own expiry', () => {
    const root = makeCa({ cn: 'short-lived root', key: testKey(1), notAfter: new Date(Date.now() + 600e3) });
    const dir = tmpDir();
    write(dir, root.certPem, root.keyPem);
    const { log, lines: warnings } = memoryLogger();
    const shortCa = MeshCA.loadOrCreate({ dir, trustDomain: TD, log });
    assert.ok(warnings.some((l) => /mesh CA certificate expires in 0 days/.test(String(l['msg']))));
    const signed = shortCa.sign({ node: 'n1', csrPem: csr([WEB]), ttlSeconds: 3600, authorize });
    assert.ok(signed.notAfter.getTime() <= root.cert.validity.notAfter.getTime());
  });

  it('issues the controller a serving certificate for the names agents dial, chained to the root', () => {
    const { ca } = newCa();
    const serving = ca.issueServing(['nodemesh-controller.nodemesh-system.svc'], 3600);
    const leaf = new X509Certificate(serving.certChainPem);
    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/nodemesh-system/sa/nodemesh-controller, DNS:nodemesh-controller.nodemesh-system.svc');
    assert.ok(leaf.checkPrivateKey(crypto.createPrivateKey(serving.key)));
    assert.ok(leaf.verify(new X509Certificate(ca.rootPem).publicKey));
  });
});

