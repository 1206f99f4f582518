import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeMayHold } from './authz-rule.js';
import { nodeIdentity, parseSpiffeId } from './spiffe.js';
import { podsState } from '../testing/mesh.js';

const state = podsState([
  { namespace: 'shop', name: 'web-1', nodeName: 'n1', serviceAccount: 'web' },
  { namespace: 'shop', name: 'db-1', nodeName: 'n2', serviceAccount: 'db' },
]);
const id = (ns: string, sa: string) => parseSpiffeId(`spiffe://cluster.local/ns/${ns}/sa/${sa}`);

describe('nodeMayHold', () => {
  it('grants a workload identity to the node running a pod with that service account', () => {
    assert.equal(nodeMayHold(state, 'n1', id('shop', 'web')), true);
    assert.equal(nodeMayHold(state, 'n2', id('shop', 'db')), true);
  });

  it('refuses it to other nodes, saying where the pods are', () => {
    assert.equal(nodeMayHold(state, 'n1', id('shop', 'db')), 'no pod on node n1 runs as service account shop/db (pods with it run on n2)');
    assert.equal(nodeMayHold(state, 'n1', id('other', 'web')), 'no pod on node n1 runs as service account other/web');
  });

  it('grants the node identity only to known nodes, and never as a workload identity', () => {
    assert.equal(nodeMayHold(state, 'n1', 'node'), true);
    assert.equal(nodeMayHold(state, 'n9', 'node'), 'node n9 is not in the mesh state');
    assert.match(String(nodeMayHold(state, 'n1', nodeIdentity('cluster.local'))), /is the node identity/);
  });
});
