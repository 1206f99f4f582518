import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MeshState } from '../../state/model.js';
import { indexFromYaml, nodeAndShop } from '../../testing/mesh.js';
import { GrpcCode } from '../../http/grpc-status.js';
import { LocalPolicies, type PolicyTarget } from './local-policies.js';

const BASE = `${nodeAndShop('n1', '10.0.0.1')}
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-api, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]`;

const SERVICE_REF = '{ group: "", kind: Service, name: web }';
const ROUTE_REF = '{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web-api }';

const rateLimit = (name: string, target: string, bucket: string) => `
---
apiVersion: nodemesh.io/v1alpha1
kind: LocalRateLimit
metadata: { name: ${name}, namespace: shop }
spec: { targetRefs: [${target}], tokenBucket: ${bucket} }`;

const fault = (name: string, target: string, spec: string) => `
---
apiVersion: nodemesh.io/v1alpha1
kind: FaultInjection
metadata: { name: ${name}, namespace: shop }
spec: { targetRefs: [${target}], ${spec} }`;

function stateOf(policies: string): MeshState {
  const { state } = indexFromYaml(BASE + policies, 'n1');
  assert.deepEqual(state.rejections, []);
  return state;
}

const SERVICE: PolicyTarget = { kind: 'Service', namespace: 'shop', name: 'web' };
const ROUTE: PolicyTarget = { kind: 'HTTPRoute', namespace: 'shop', name: 'web-api' };
/** As the proxy passes them for a request that matched the route: route first. */
const ROUTED = [ROUTE, SERVICE];
const live = (): AbortSignal => new AbortController().signal;

/** How many of `n` requests pass right now. */
async function passing(policies: LocalPolicies, state: MeshState, targets: readonly PolicyTarget[], n: number): Promise<number> {
  let passed = 0;
  for (let i = 0; i < n; i += 1) if ((await policies.apply(state, targets, live())) === undefined) passed += 1;
  return passed;
}

describe('LocalPolicies: LocalRateLimit', () => {
  it('starts full, refills tokensPerFill every fillInterval up to maxTokens', async () => {
    let now = 1_000_000;
    const policies = new LocalPolicies({ now: () => now });
    const state = stateOf(rateLimit('web-limit', SERVICE_REF, '{ maxTokens: 3, tokensPerFill: 2, fillInterval: 1s }'));
    assert.equal(await passing(policies, state, [SERVICE], 4), 3, 'a full bucket of 3');
    now += 999;
    assert.equal(await passing(policies, state, [SERVICE], 1), 0, 'no refill before the interval');
    now += 1;
    assert.equal(await passing(policies, state, [SERVICE], 3), 2, 'one fill of 2 tokens');
    now += 1500;
    assert.equal(await passing(policies, state, [SERVICE], 3), 2, 'one whole interval passed: one fill');
    now += 500;
    assert.equal(await passing(policies, state, [SERVICE], 3), 2, 'the half interval left over counts toward the next fill');
    now += 60_000;
    assert.equal(await passing(policies, state, [SERVICE], 5), 3, 'never more than maxTokens');
  });

  it('answers 429 with flag RL, x-envoy-ratelimited and RESOURCE_EXHAUSTED for gRPC', async () => {
    const policies = new LocalPolicies({ now: () => 0 });
    const state = stateOf(rateLimit('web-limit', SERVICE_REF, '{ maxTokens: 1, fillInterval: 1s }'));
    assert.equal(await policies.apply(state, [SERVICE], live()), undefined);
    const reply = await policies.apply(state, [SERVICE], live());
    assert.deepEqual(reply, {
      status: 429,
      flag: 'RL',
      message: 'local_rate_limited by LocalRateLimit shop/web-limit',
      grpcStatus: GrpcCode.RESOURCE_EXHAUSTED,
      headers: { 'x-envoy-ratelimited': 'true' },
    });
  });

  it('keeps a bucket across states until retain() drops a policy no longer configured', async () => {
    const policies = new LocalPolicies({ now: () => 0 });
    const limited = stateOf(rateLimit('web-limit', SERVICE_REF, '{ maxTokens: 1, fillInterval: 1h }'));
    assert.equal(await passing(policies, limited, [SERVICE], 2), 1);
    const again = stateOf(rateLimit('web-limit', SERVICE_REF, '{ maxTokens: 1, fillInterval: 1h }'));
    assert.equal(await passing(policies, again, [SERVICE], 1), 0, 'a new state with the same policy keeps its bucket');
    policies.retain(stateOf(''));
    assert.equal(await passing(policies, limited, [SERVICE], 1), 1, 'the policy came back with a full bucket');
  });
});

describe('LocalPolicies: attachment', () => {
  it('applies a fault of the matched route instead of the Service one', async () => {
    const policies = new LocalPolicies({ random: () => 0 });
    const state = stateOf(fault('svc-fault', SERVICE_REF, 'abort: { httpStatus: 503 }') + fault('route-fault', ROUTE_REF, 'abort: { httpStatus: 418 }'));
    assert.equal((await policies.apply(state, ROUTED, live()))?.status, 418);
    assert.equal((await policies.apply(state, [SERVICE], live()))?.status, 503);
  });

  it('falls back to the Service fault when the route has none', async () => {
    const policies = new LocalPolicies({ random: () => 0 });
    const state = stateOf(fault('svc-fault', SERVICE_REF, 'abort: { httpStatus: 503 }'));
    const reply = await policies.apply(state, ROUTED, live());
    assert.equal(reply?.status, 503);
    assert.equal(reply?.message, 'fault filter abort by FaultInjection shop/svc-fault');
  });

  it('limits a routed request by the route bucket alone, not also the Service bucket', async () => {
    const policies = new LocalPolicies({ now: () => 0 });
    const state = stateOf(
      rateLimit('svc-limit', SERVICE_REF, '{ maxTokens: 1, fillInterval: 1h }') + rateLimit('route-limit', ROUTE_REF, '{ maxTokens: 3, fillInterval: 1h }'),
    );
    assert.equal(await passing(policies, state, ROUTED, 5), 3, 'the route allows 3');
    assert.equal(await passing(policies, state, [SERVICE], 3), 1, 'unrouted requests still have the Service bucket to themselves');
    const reply = await policies.apply(state, ROUTED, live());
    assert.equal(reply?.message, 'local_rate_limited by LocalRateLimit shop/route-limit');
  });

  it('passes a request no policy targets', async () => {
    const policies = new LocalPolicies({ random: () => 0, now: () => 0 });
    const state = stateOf(fault('other', '{ group: "", kind: Service, name: api }', 'abort: { httpStatus: 503 }'));
    assert.equal(await policies.apply(state, ROUTED, live()), undefined);
  });
});

describe('LocalPolicies: FaultInjection', () => {
  /** Draws from `values` in order, as Math.random would be called. */
  const draws = (...values: number[]) => () => {
    const v = values.shift();
    assert.ok(v !== undefined, 'more random draws than expected');
    return v;
  };

  it('aborts with httpStatus for its percentage of requests', async () => {
    const state = stateOf(fault('chaos', SERVICE_REF, 'abort: { httpStatus: 502, percentage: 30 }'));
    assert.deepEqual(await new LocalPolicies({ random: draws(0.2999) }).apply(state, [SERVICE], live()), {
      status: 502,
      flag: 'FI',
      message: 'fault filter abort by FaultInjection shop/chaos',
    });
    assert.equal(await new LocalPolicies({ random: draws(0.3) }).apply(state, [SERVICE], live()), undefined);
  });

  it('aborts a gRPC call with grpcStatus in an HTTP 200 answer', async () => {
    const state = stateOf(fault('chaos', SERVICE_REF, 'abort: { grpcStatus: UNAVAILABLE, percentage: 50 }'));
    const reply = await new LocalPolicies({ random: draws(0.1) }).apply(state, [SERVICE], live());
    assert.deepEqual(reply, { status: 200, flag: 'FI', message: 'fault filter abort by FaultInjection shop/chaos', grpcStatus: GrpcCode.UNAVAILABLE });
    assert.equal(await new LocalPolicies({ random: draws(0.5) }).apply(state, [SERVICE], live()), undefined);
  });

  it('delays the request by fixedDelay, then decides the abort', async () => {
    const state = stateOf(fault('slow', SERVICE_REF, 'delay: { fixedDelay: 60ms }, abort: { httpStatus: 503, percentage: 50 }'));
    const started = performance.now();
    const reply = await new LocalPolicies({ random: draws(0, 0.9) }).apply(state, [SERVICE], live());
    const elapsed = performance.now() - started;
    assert.equal(reply, undefined);
    assert.ok(elapsed >= 55, `waited ${elapsed} ms`);
  });

  it('skips the delay outside its percentage', async () => {
    const state = stateOf(fault('slow', SERVICE_REF, 'delay: { fixedDelay: 30s, percentage: 10 }'));
    const guard = AbortSignal.timeout(5000);
    const started = performance.now();
    assert.equal(await new LocalPolicies({ random: draws(0.1) }).apply(state, [SERVICE], guard), undefined);
    assert.ok(performance.now() - started < 1000);
  });

  it('cuts the delay short when the client goes away', async () => {
    const state = stateOf(fault('slow', SERVICE_REF, 'delay: { fixedDelay: 30s }'));
    const gone = new AbortController();
    const started = performance.now();
    setTimeout(() => gone.abort(), 20);
    assert.equal(await new LocalPolicies({ random: draws(0) }).apply(state, [SERVICE], gone.signal), undefined);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 2000, `took ${elapsed} ms`);
  });
});
