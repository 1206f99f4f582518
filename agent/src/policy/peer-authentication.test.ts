import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyConfig } from '../control/apply.js';
import { parseConfig } from '../control/config-docs.js';
import { mtlsMode, ROOT_NAMESPACE, type EffectiveMtlsMode } from './index.js';

const pod = (namespace: string, name: string, app: string): string => `
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${namespace}, labels: { app: ${app} } }
spec: { nodeName: node-1 }
status: { podIP: 10.1.0.7 }
`;

const peer = (namespace: string, name: string, spec: string): string =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec: ${spec}\n`;

const mesh = (mode: string): string => peer(ROOT_NAMESPACE, 'default', `{ mtls: { mode: ${mode} } }`);
const namespace = (mode: string, name = 'default'): string => peer('shop', name, `{ mtls: { mode: ${mode} } }`);
const workload = (mode: string, ports = '', name = 'web', app = 'web'): string =>
  peer('shop', name, `{ selector: { matchLabels: { app: ${app} } }, mtls: { mode: ${mode} }${ports ? `, portLevelMtls: { ${ports} }` : ''} }`);

/** The mode of shop/web-1 (or `target`) on `port`, with these policies. */
function modeOf(policies: string[], port = 8080, target = 'shop/web-1'): EffectiveMtlsMode {
  const docs = [pod('shop', 'web-1', 'web'), pod('shop', 'db-1', 'db'), pod(ROOT_NAMESPACE, 'tool-1', 'tool'), ...policies];
  const state = applyConfig(null, parseConfig(docs.join('\n---\n'), 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true });
  assert.deepEqual(state.rejections, []);
  return mtlsMode(state, state.pods.get(target)!, port);
}

describe('mtlsMode: Istio precedence workload port > workload > namespace > mesh > PERMISSIVE', () => {
  const cases: Array<[string, string[], number, EffectiveMtlsMode]> = [
    ['no policy: PERMISSIVE', [], 8080, 'PERMISSIVE'],
    ['mesh-wide STRICT', [mesh('STRICT')], 8080, 'STRICT'],
    ['mesh-wide UNSET: the default', [mesh('UNSET')], 8080, 'PERMISSIVE'],
    ['namespace over mesh', [mesh('STRICT'), namespace('PERMISSIVE')], 8080, 'PERMISSIVE'],
    ['namespace UNSET inherits mesh', [mesh('STRICT'), namespace('UNSET')], 8080, 'STRICT'],
    ['namespace without mtls inherits mesh', [mesh('DISABLE'), peer('shop', 'default', '{}')], 8080, 'DISABLE'],
    ['workload over namespace', [namespace('STRICT'), workload('DISABLE')], 8080, 'DISABLE'],
    ['workload UNSET inherits namespace', [namespace('STRICT'), workload('UNSET')], 8080, 'STRICT'],
    ['workload UNSET and no namespace inherits mesh', [mesh('STRICT'), workload('UNSET')], 8080, 'STRICT'],
    ['port-level over workload, on that port', [workload('STRICT', '"9090": { mode: DISABLE }')], 9090, 'DISABLE'],
    ['port-level does not touch other ports', [workload('STRICT', '"9090": { mode: DISABLE }')], 8080, 'STRICT'],
    ['port-level STRICT under a PERMISSIVE workload', [workload('PERMISSIVE', '"8080": { mode: STRICT }')], 8080, 'STRICT'],
    ['port-level UNSET inherits the workload mode', [workload('DISABLE', '"8080": { mode: UNSET }')], 8080, 'DISABLE'],
    ['port-level UNSET under workload UNSET inherits namespace', [namespace('STRICT'), workload('UNSET', '"8080": { mode: UNSET }')], 8080, 'STRICT'],
    ['port-level under a workload without mtls over mesh', [mesh('STRICT'), peer('shop', 'web', '{ selector: { matchLabels: { app: web } }, portLevelMtls: { "8080": { mode: PERMISSIVE } } }')], 8080, 'PERMISSIVE'],
    ['a selector that does not match the pod', [namespace('STRICT'), workload('DISABLE', '', 'db', 'db')], 8080, 'STRICT'],
    ['a policy of another namespace', [peer('other', 'default', '{ mtls: { mode: STRICT } }')], 8080, 'PERMISSIVE'],
    ['a selector policy in the root namespace is ignored, as in Istio', [peer(ROOT_NAMESPACE, 'web', '{ selector: { matchLabels: { app: web } }, mtls: { mode: STRICT } }')], 8080, 'PERMISSIVE'],
    ['competing workload policies: the first by name', [workload('DISABLE', '', 'b-web'), workload('STRICT', '', 'a-web')], 8080, 'STRICT'],
    ['competing namespace policies: the first by name', [namespace('DISABLE', 'b'), namespace('STRICT', 'a')], 8080, 'STRICT'],
    ['competing mesh-wide policies: the first by name', [peer(ROOT_NAMESPACE, 'b', '{ mtls: { mode: DISABLE } }'), peer(ROOT_NAMESPACE, 'a', '{ mtls: { mode: STRICT } }')], 8080, 'STRICT'],
  ];

  for (const [what, policies, port, expected] of cases) {
    it(`${what}: ${expected}`, () => assert.equal(modeOf(policies, port), expected));
  }

  it('gives pods of the root namespace the mesh-wide mode', () => {
    assert.equal(modeOf([mesh('STRICT')], 8080, `${ROOT_NAMESPACE}/tool-1`), 'STRICT');
    assert.equal(modeOf([namespace('STRICT')], 8080, `${ROOT_NAMESPACE}/tool-1`), 'PERMISSIVE');
  });
});
