import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { memoryLogger, podsState } from '../testing/mesh.js';
import { nodeMayHold } from './authz-rule.js';
import { MeshCA } from './ca.js';
import { handshake, issueLeaf, makeCa, pemOf, testKey, tmpDir } from '../testing/pki.js';
import { identityOfSocket } from './peer.js';
import { formatSpiffeId } from './spiffe.js';
import { clientTlsOptions, serverTlsOptions, type TlsCredentials } from './tls-options.js';
import { createCsr } from './x509.js';

const TD = 'cluster.local';
const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const NODE_ID = 'spiffe://cluster.local/ns/nodemesh-system/sa/nodemesh-agent';
const state = podsState([{ namespace: 'shop', name: 'web-1', nodeName: 'n1', serviceAccount: 'web' }]);

// The test's own root is loaded as a user-supplied CA, so the test can also sign what the CA
// never would (expired certificates).
const root = makeCa({ cn: 'test mesh root', key: testKey(1) });
const dir = tmpDir();
fs.writeFileSync(`${dir}/ca-cert.pem`, root.certPem);
fs.writeFileSync(`${dir}/ca-key.pem`, root.keyPem, { mode: 0o600 });
const ca = MeshCA.loadOrCreate({ dir, trustDomain: TD, log: memoryLogger().log });

const issue = (node: string, uri: string, dnsNames: string[] = [], keyIndex = 0): TlsCredentials => {
  const key = testKey(keyIndex);
  const signed = ca.sign({
    node,
    csrPem: createCsr({ uris: [uri], dnsNames, privateKey: key }),
    ttlSeconds: 600,
    authorize: (n, id) => nodeMayHold(state, n, id),
  });
  return { key: pemOf(key), cert: signed.certChainPem, ca: signed.rootPem };
};

const nodeCreds = issue('n1', NODE_ID, ['n1'], 2);
const webCreds = issue('n1', WEB);
const server = serverTlsOptions(nodeCreds);
const client = (creds: TlsCredentials, node = 'n1') => clientTlsOptions(creds, { node, trustDomain: TD });

describe('mTLS between node proxies', () => {
  it('connects a workload client to a node server with certificates from the CA, both verifying the peer', async () => {
    const r = await handshake(server, client(webCreds));
    assert.equal(r.clientError, undefined);
    assert.equal(r.received, 'ok');
    assert.equal(r.protocol, 'TLSv1.3');
    assert.equal(r.alpn, 'h2');
    const peer = identityOfSocket(r.accepted!, TD);
    assert.ok(!('reason' in peer), JSON.stringify(peer));
    assert.equal(formatSpiffeId(peer), WEB);
  });

  it('the server refuses a client certificate from another CA', async () => {
    const foreign = makeCa({ cn: 'someone else', key: testKey(3) });
    const cert = issueLeaf(foreign, { uris: [WEB], key: testKey(0) });
    const r = await handshake(server, client({ ...webCreds, cert }));
    assert.equal(r.accepted, undefined);
    assert.equal(r.serverAuthorizationError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    assert.equal(r.received, '');
  });

  it('the server refuses an expired client certificate from the mesh root', async () => {
    const cert = issueLeaf(root, {
      uris: [WEB],
      key: testKey(0),
      notBefore: new Date(Date.now() - 7200e3),
      notAfter: new Date(Date.now() - 3600e3),
    });
    const r = await handshake(server, client({ ...webCreds, cert }));
    assert.equal(r.accepted, undefined);
    assert.equal(r.serverAuthorizationError, 'CERT_HAS_EXPIRED');
    assert.equal(r.received, '');
  });

  it('the server refuses a client without a certificate', async () => {
    const { key: _key, cert: _cert, ...noCert } = client(webCreds);
    const r = await handshake(server, noCert);
    assert.equal(r.accepted, undefined);
    assert.match(String(r.serverError), /peer did not return a certificate/);
    assert.match(String(r.clientError), /certificate required/);
  });

  it('the client refuses a server that is not the node it dialled, or not a node at all', async () => {
    const wrongNode = await handshake(server, client(webCreds, 'n2'));
    assert.match(String(wrongNode.clientError), /Host: n2\. is not in the cert's altnames: URI:spiffe:\/\/cluster.local\/ns\/nodemesh-system\/sa\/nodemesh-agent, DNS:n1/);
    assert.equal(wrongNode.received, '');

    const workloadServer = issueLeaf(root, { uris: [WEB], dnsNames: ['n1'], key: testKey(2) });
    const impostor = await handshake(serverTlsOptions({ ...nodeCreds, cert: workloadServer }), client(webCreds));
    assert.match(String(impostor.clientError), /node n1 presented spiffe:\/\/cluster.local\/ns\/shop\/sa\/web, expected the node identity/);

    const otherDomain = issueLeaf(root, { uris: ['spiffe://other.example/ns/nodemesh-system/sa/nodemesh-agent'], dnsNames: ['n1'], key: testKey(2) });
    const foreign = await handshake(serverTlsOptions({ ...nodeCreds, cert: otherDomain }), client(webCreds));
    assert.match(String(foreign.clientError), /trust domain other.example, not cluster.local/);
  });

  it('refuses TLS 1.2', async () => {
    const r = await handshake(server, { ...client(webCreds), minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    assert.equal(r.accepted, undefined);
    assert.match(String(r.clientError), /alert protocol version/);
  });
});
