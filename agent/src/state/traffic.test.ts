import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ROOT_NAMESPACE as POLICY_ROOT_NAMESPACE } from '../policy/index.js';
import { indexFromYaml } from '../testing/mesh.js';
import type { MeshState } from './model.js';
import { anchoredRegExp, attachedPolicies, destinationRuleFor, ROOT_NAMESPACE, trafficPolicyFor } from './traffic.js';

const mesh = (...docs: string[]): MeshState => {
  const { state } = indexFromYaml(docs.join('\n---\n'), 'node-1');
  assert.deepEqual(state.rejections, []);
  return state;
};

const dr = (namespace: string, name: string, host: string, trafficPolicy: string, created?: string): string => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: ${namespace}${created ? `, creationTimestamp: "${created}"` : ''} }
spec: { host: ${host}, trafficPolicy: ${trafficPolicy} }`;

const WEB = { namespace: 'shop', name: 'web' };
const nameOf = (state: MeshState, client: string): string | undefined => destinationRuleFor(state, client, WEB)?.name;

describe('trafficPolicyFor', () => {
  it("looks in the client's namespace, then the service's, then the root namespace", () => {
    const root = dr(ROOT_NAMESPACE, 'mesh', 'web.shop.svc.cluster.local', '{ loadBalancer: { simple: RANDOM } }');
    const service = dr('shop', 'own', 'web', '{ loadBalancer: { simple: ROUND_ROBIN } }');
    const client = dr('front', 'client', 'web.shop', '{ loadBalancer: { simple: LEAST_REQUEST } }');
    const elsewhere = dr('other', 'elsewhere', 'web.shop', '{ loadBalancer: { simple: LEAST_REQUEST } }');

    const all = mesh(root, service, client, elsewhere);
    assert.equal(nameOf(all, 'front'), 'client');
    assert.equal(nameOf(all, 'shop'), 'own');
    assert.equal(nameOf(all, 'billing'), 'own', 'a rule in a third namespace applies only to its own clients');
    assert.equal(nameOf(all, 'other'), 'elsewhere');
    assert.equal(nameOf(mesh(root, client), 'billing'), 'mesh');
    assert.deepEqual(trafficPolicyFor(all, 'front', WEB, 80), { loadBalancer: { simple: 'LEAST_REQUEST' } });
    assert.equal(trafficPolicyFor(all, 'front', { namespace: 'shop', name: 'cart' }, 80), undefined, 'no rule for that host');
    assert.equal(ROOT_NAMESPACE, POLICY_ROOT_NAMESPACE);
  });

  it('takes the oldest rule of a namespace, then the first by name; a rule without creation time counts as oldest', () => {
    const young = dr('shop', 'a-young', 'web', '{ loadBalancer: { simple: RANDOM } }', '2024-06-01T00:00:00Z');
    const old = dr('shop', 'z-old', 'web', '{ loadBalancer: { simple: RANDOM } }', '2024-01-01T00:00:00Z');
    assert.equal(nameOf(mesh(young, old), 'shop'), 'z-old');
    assert.equal(nameOf(mesh(young, old, dr('shop', 'undated', 'web', '{ loadBalancer: { simple: RANDOM } }')), 'shop'), 'undated');
    assert.equal(nameOf(mesh(dr('shop', 'b', 'web', '{ loadBalancer: { simple: RANDOM } }'), dr('shop', 'a', 'web', '{ loadBalancer: { simple: RANDOM } }')), 'shop'), 'a');
  });

  it('replaces the top-level settings a port sets, and keeps the others', () => {
    const state = mesh(dr('shop', 'web', 'web', `{
      loadBalancer: { simple: RANDOM },
      connectionPool: { tcp: { maxConnections: 10 } },
      outlierDetection: { consecutive5xxErrors: 2 },
      portLevelSettings: [{ port: { number: 8080 }, connectionPool: { http: { http2MaxRequests: 5 } }, loadBalancer: { consistentHash: { useSourceIp: true } } }] }`));
    const outlierDetection = { consecutive5xxErrors: 2, consecutiveGatewayErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 };
    assert.deepEqual(trafficPolicyFor(state, 'shop', WEB, 80), {
      loadBalancer: { simple: 'RANDOM' }, connectionPool: { maxConnections: 10 }, outlierDetection,
    });
    assert.deepEqual(trafficPolicyFor(state, 'shop', WEB, 8080), {
      loadBalancer: { consistentHash: { useSourceIp: true } }, connectionPool: { http2MaxRequests: 5 }, outlierDetection,
    });
  });
});

describe('attachedPolicies', () => {
  const policy = (kind: 'FaultInjection' | 'LocalRateLimit', namespace: string, name: string, targets: string): string => `apiVersion: nodemesh.io/v1alpha1
kind: ${kind}
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  targetRefs: ${targets}
  ${kind === 'FaultInjection' ? 'abort: { httpStatus: 503 }' : 'tokenBucket: { maxTokens: 1, fillInterval: 1s }'}`;
  const SERVICE = '[{ group: "", kind: Service, name: web }]';
  const ROUTE = '[{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }, { group: "", kind: Service, name: cart }]';

  it("finds the policies naming the target by kind and name, in the target's namespace, by name", () => {
    const state = mesh(
      policy('FaultInjection', 'shop', 'z-fault', SERVICE),
      policy('FaultInjection', 'shop', 'a-fault', SERVICE),
      policy('FaultInjection', 'shop', 'route-fault', ROUTE),
      policy('FaultInjection', 'front', 'other-namespace', SERVICE),
      policy('LocalRateLimit', 'shop', 'limit', ROUTE),
    );
    const names = (target: Parameters<typeof attachedPolicies>[1]): [string[], string[]] => {
      const { faults, rateLimits } = attachedPolicies(state, target);
      return [faults.map((f) => f.name), rateLimits.map((l) => l.name)];
    };
    assert.deepEqual(names({ kind: 'Service', namespace: 'shop', name: 'web' }), [['a-fault', 'z-fault'], []]);
    assert.deepEqual(names({ kind: 'HTTPRoute', namespace: 'shop', name: 'web' }), [['route-fault'], ['limit']]);
    assert.deepEqual(names({ kind: 'GRPCRoute', namespace: 'shop', name: 'web' }), [[], []]);
    assert.deepEqual(names({ kind: 'Service', namespace: 'shop', name: 'cart' }), [['route-fault'], ['limit']]);
    assert.deepEqual(names({ kind: 'Service', namespace: 'front', name: 'web' }), [['other-namespace'], []]);
  });
});

describe('anchoredRegExp', () => {
  it('matches the whole value, alternatives included', () => {
    const re = anchoredRegExp('/items/[0-9]+|/health');
    assert.ok(re.test('/items/42'));
    assert.ok(re.test('/health'));
    assert.ok(!re.test('/items/42/x'));
    assert.ok(!re.test('/x/health'));
  });
});
