import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { describe, it } from 'node:test';
import { issueLeaf, makeCa, testKey } from '../testing/pki.js';
import { identityOfPeer } from './peer.js';

const TD = 'cluster.local';
const root = makeCa({ cn: 'peer test root', key: testKey(1) });
const peer = (uris: string[], dnsNames: string[] = []) => new X509Certificate(issueLeaf(root, { uris, dnsNames, key: testKey(0) }));
const reason = (r: ReturnType<typeof identityOfPeer>): string => ('reason' in r ? r.reason : `accepted ${JSON.stringify(r)}`);

describe('identityOfPeer', () => {
  it('reads the SPIFFE id of the single URI SAN', () => {
    assert.deepEqual(identityOfPeer(peer(['spiffe://cluster.local/ns/shop/sa/web'], ['n1']), TD), {
      trustDomain: TD,
      namespace: 'shop',
      serviceAccount: 'web',
    });
  });

  it('accepts the PeerCertificate form Node gives on a TLS socket', () => {
    const cert = { subjectaltname: 'URI:spiffe://cluster.local/ns/shop/sa/web' } as PeerCertificate;
    assert.equal(reason(identityOfPeer(cert, TD)), 'accepted {"trustDomain":"cluster.local","namespace":"shop","serviceAccount":"web"}');
  });

  it('gives the reason for every certificate it refuses', () => {
    assert.equal(
      reason(identityOfPeer(peer(['spiffe://evil.example/ns/shop/sa/web']), TD)),
      'the peer spiffe://evil.example/ns/shop/sa/web is in trust domain evil.example, not cluster.local',
    );
    assert.equal(reason(identityOfPeer(peer([], ['n1']), TD)), 'the peer certificate has no URI SAN (no SPIFFE identity)');
    assert.equal(
      reason(identityOfPeer(peer(['spiffe://cluster.local/ns/a/sa/x', 'spiffe://cluster.local/ns/b/sa/y']), TD)),
      'the peer certificate has 2 URI SANs (spiffe://cluster.local/ns/a/sa/x, spiffe://cluster.local/ns/b/sa/y); an SVID carries exactly one',
    );
    assert.match(reason(identityOfPeer(peer(['https://web.shop.svc/']), TD)), /^the peer's URI SAN is not a workload identity: "https:\/\/web.shop.svc\/"/);
  });
});
