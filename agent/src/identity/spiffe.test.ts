import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatSpiffeId, isNodeIdentity, nodeIdentity, parseSpiffeId, principalOf } from './spiffe.js';
import { parseSubjectAltName } from './x509.js';

describe('SPIFFE ids', () => {
  it('parses, formats and gives the Istio principal of a workload identity', () => {
    const id = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/web-frontend');
    assert.deepEqual(id, { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web-frontend' });
    assert.equal(formatSpiffeId(id), 'spiffe://cluster.local/ns/shop/sa/web-frontend');
    assert.equal(principalOf(id), 'cluster.local/ns/shop/sa/web-frontend');
  });

  it('refuses anything but spiffe://<td>/ns/<ns>/sa/<sa>, naming the problem', () => {
    const cases: Array<[string, RegExp]> = [
      ['spiffe://Cluster.Local/ns/shop/sa/web', /trust domain "Cluster.Local" must be lowercase/],
      ['spiffe://cluster.local/ns/shop', /wrong shape/],
      ['spiffe://cluster.local/ns/shop/sa/web/extra', /wrong shape/],
      ['spiffe://cluster.local/ns/shop/sa/web?x=1', /service account "web\?x=1"/],
      ['https://cluster.local/ns/shop/sa/web', /wrong shape/],
      ['spiffe://cluster.local:443/ns/shop/sa/web', /trust domain/],
      ['spiffe://cluster.local/ns/Shop/sa/web', /namespace "Shop" is not a DNS label/],
      ['spiffe://cluster.local/ns//sa/web', /namespace "" is not a DNS label/],
      ['spiffe:///ns/shop/sa/web', /trust domain ""/],
    ];
    for (const [uri, message] of cases) {
      assert.throws(() => parseSpiffeId(uri), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'NM_ERR_IDENTITY_SPIFFE_ID', uri);
        assert.match(err.message, message, uri);
        return true;
      });
    }
  });

  it('names the node identity nodemesh-system/nodemesh-agent', () => {
    const id = nodeIdentity('mesh.example');
    assert.equal(formatSpiffeId(id), 'spiffe://mesh.example/ns/nodemesh-system/sa/nodemesh-agent');
    assert.ok(isNodeIdentity(id));
    assert.ok(!isNodeIdentity(parseSpiffeId('spiffe://mesh.example/ns/nodemesh-system/sa/other')));
  });

  it("reads Node's subjectaltname strings, quoted values included", () => {
    assert.deepEqual(parseSubjectAltName('URI:spiffe://td/ns/a/sa/b, DNS:n1'), [
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'DNS', value: 'n1' },
    ]);
    assert.deepEqual(parseSubjectAltName('URI:"spiffe://td/ns/a/sa/b, DNS:forged", DNS:n1'), [
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b, DNS:forged' },
      { type: 'DNS', value: 'n1' },
    ]);
    assert.deepEqual(parseSubjectAltName(undefined), []);
  });
});
