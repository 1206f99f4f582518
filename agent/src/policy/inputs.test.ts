import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { indexFromYaml } from '../testing/mesh.js';
import { authorizationChanged } from './inputs.js';

const BASE = `
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { nodemesh.io/mode: enabled } }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1, serviceAccountName: web }
status: { podIP: 10.1.0.5 }
`;
const POD_2 = `
---
apiVersion: v1
kind: Pod
metadata: { name: web-2, namespace: shop, labels: { app: web } }
spec: { nodeName: n2, serviceAccountName: web }
status: { podIP: 10.1.0.6 }
`;
const DENY = `
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny, namespace: shop }
spec: { action: DENY, rules: [{ from: [{ source: { namespaces: [other] } }] }] }
`;

const meshState = (yaml: string) => indexFromYaml(yaml, 'n1').state;

describe('authorizationChanged', () => {
  const base = meshState(BASE);

  it('ignores endpoint churn: pods added, removed or turning unready', () => {
    assert.equal(authorizationChanged(base, meshState(BASE + POD_2)), false);
    assert.equal(authorizationChanged(meshState(BASE + POD_2), base), false);
    const unready = BASE.replace('status: { podIP: 10.1.0.5 }', "status: { podIP: 10.1.0.5, conditions: [{ type: Ready, status: 'False' }] }");
    assert.equal(authorizationChanged(base, meshState(unready)), false);
  });

  it('sees policies, namespace labels, and pod labels or service accounts change', () => {
    assert.equal(authorizationChanged(base, meshState(BASE + DENY)), true);
    assert.equal(authorizationChanged(base, meshState(BASE.replace('nodemesh.io/mode: enabled', 'nodemesh.io/mode: enabled, team: a'))), true);
    assert.equal(authorizationChanged(base, meshState(BASE.replace('labels: { app: web }', 'labels: { app: api }'))), true);
    assert.equal(authorizationChanged(base, meshState(BASE.replace('serviceAccountName: web', 'serviceAccountName: api'))), true);
  });
});
