import { it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { applyState, plaintextPods } from './apply-state.js';
import type { CertManager } from '../identity/cert-manager.js';
import type { PodMtls, Redirect } from '../redirect/index.js';
import { indexFromYaml, nodeAndShop } from '../testing/mesh.js';

const pod = (name: string, ip: string, app: string) => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${app} }, annotations: { nodemesh.io/cgroup: /cg/${name} } }
spec: { nodeName: n1 }
status: { podIP: ${ip} }
`;
const PODS = `${nodeAndShop('n1', '10.77.0.1')}\n${pod('web-1', '10.244.1.2', 'web')}${pod('db-1', '10.244.1.3', 'db')}${pod('api-1', '10.244.1.4', 'api')}`;
const STRICT_DB_API_PORT = `---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: strict-db, namespace: shop }
spec: { selector: { matchLabels: { app: db } }, mtls: { mode: STRICT } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: api, namespace: shop }
spec: { selector: { matchLabels: { app: api } }, mtls: { mode: STRICT }, portLevelMtls: { "9090": { mode: PERMISSIVE } } }
`;
const ALLOW_WEB = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-web, namespace: shop }
spec: { selector: { matchLabels: { app: web } }, rules: [{ from: [{ source: { ipBlocks: [10.0.0.0/8] } }] }] }
`;

function kernelModes(yaml: string): Map<string, PodMtls> {
  let pushed = new Map<string, PodMtls>();
  const redirect = { setProxy() {}, setPods() {}, setDests() {}, setMtls: (m: Map<string, PodMtls>) => (pushed = m) } as unknown as Redirect;
  const certs = { setIdentities() {} } as unknown as CertManager;
  applyState(indexFromYaml(yaml, 'n1'), { redirect, certs, outboundPort: 15001, trustDomain: 'cluster.local' }, pino({ level: 'silent' }));
  return pushed;
}

it('the kernel modes: PERMISSIVE by default, STRICT as configured, and plaintext held to the proxy where a policy applies', () => {
  const modes = kernelModes(`${PODS}${STRICT_DB_API_PORT}${ALLOW_WEB}`);
  assert.deepEqual(modes.get('10.244.1.2'), { mode: 'permissive-proxied', ports: new Map() });
  assert.deepEqual(modes.get('10.244.1.3'), { mode: 'strict', ports: new Map() });
  assert.deepEqual(modes.get('10.244.1.4'), { mode: 'strict', ports: new Map([[9090, 'permissive']]) });
  assert.deepEqual(kernelModes(PODS).get('10.244.1.2'), { mode: 'permissive', ports: new Map() });
});

it('every pod that accepts plaintext on some port gets a plaintext listener; a STRICT-only pod none', () => {
  const pods = plaintextPods(indexFromYaml(`${PODS}${STRICT_DB_API_PORT}${ALLOW_WEB}`, 'n1'));
  assert.deepEqual(pods.map((p) => p.name).sort(), ['shop/api-1', 'shop/web-1']);
  assert.deepEqual(pods.find((p) => p.name === 'shop/web-1'), { name: 'shop/web-1', podIP: '10.244.1.2', cgroupPath: '/cg/web-1' });
});
