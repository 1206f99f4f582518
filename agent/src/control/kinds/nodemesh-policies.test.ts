import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MeshState } from '../../state/model.js';
import { applyConfig } from '../apply.js';
import { parseConfig } from '../config-docs.js';
import { ACCEPTED_KINDS } from './index.js';

const apply = (previous: MeshState | null, yaml: string): MeshState =>
  applyConfig(previous, parseConfig(yaml, 'mesh.yaml'), { node: 'node-1', cgroupExists: () => true });

const SERVICE = '[{ group: "", kind: Service, name: web }]';
const fault = (spec: string, name = 'chaos'): string =>
  `apiVersion: nodemesh.io/v1alpha1\nkind: FaultInjection\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;
const limit = (spec: string, name = 'limit'): string =>
  `apiVersion: nodemesh.io/v1alpha1\nkind: LocalRateLimit\nmetadata: { name: ${name}, namespace: shop }\nspec: ${spec}\n`;

describe('FaultInjection validation', () => {
  it('reads targets, delay and abort, with percentage 100 by default', () => {
    assert.match(ACCEPTED_KINDS, /nodemesh\.io\/v1alpha1 FaultInjection, nodemesh\.io\/v1alpha1 LocalRateLimit/);
    const state = apply(null, [
      fault(`
  targetRefs:
  - { group: "", kind: Service, name: web }
  - { group: gateway.networking.k8s.io, kind: HTTPRoute, name: web-api }
  - { group: gateway.networking.k8s.io, kind: GRPCRoute, name: cart }
  delay: { fixedDelay: 1s500ms, percentage: 12.5 }
  abort: { httpStatus: 503 }`),
      fault(`{ targetRefs: ${SERVICE}, abort: { grpcStatus: UNAVAILABLE, percentage: 0 } }`, 'grpc-name'),
      fault(`{ targetRefs: ${SERVICE}, abort: { grpcStatus: 8 } }`, 'grpc-number'),
    ].join('---\n'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.faultInjections.get('shop/chaos'), {
      namespace: 'shop',
      name: 'chaos',
      targetRefs: [{ kind: 'Service', name: 'web' }, { kind: 'HTTPRoute', name: 'web-api' }, { kind: 'GRPCRoute', name: 'cart' }],
      delay: { fixedDelayMs: 1500, percentage: 12.5 },
      abort: { httpStatus: 503, percentage: 100 },
    });
    assert.deepEqual(state.faultInjections.get('shop/grpc-name')?.abort, { grpcStatus: 14, percentage: 0 });
    assert.deepEqual(state.faultInjections.get('shop/grpc-number')?.abort, { grpcStatus: 8, percentage: 100 });
  });

  const TARGET_HINT = 'is required: at least one { group: "", kind: Service, name } or { group: gateway.networking.k8s.io, kind: HTTPRoute or GRPCRoute, name }';
  const invalid: Array<[string, string, string, string]> = [
    ['no targetRefs', '{ abort: { httpStatus: 503 } }', 'spec.targetRefs', TARGET_HINT],
    ['empty targetRefs', '{ targetRefs: [], abort: { httpStatus: 503 } }', 'spec.targetRefs', TARGET_HINT],
    ['a target without group', '{ targetRefs: [{ kind: Service, name: web }], abort: { httpStatus: 503 } }', 'spec.targetRefs[0].group',
      'is required: "" for a Service, gateway.networking.k8s.io for a route'],
    ['a route in the core group', '{ targetRefs: [{ group: "", kind: HTTPRoute, name: web }], abort: { httpStatus: 503 } }', 'spec.targetRefs[0].group',
      'must be gateway.networking.k8s.io for kind HTTPRoute, got ""'],
    ['a Gateway target', '{ targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: gw }], abort: { httpStatus: 503 } }', 'spec.targetRefs[0].kind',
      'must be Service, HTTPRoute or GRPCRoute, got "Gateway"'],
    ['a target in another namespace', '{ targetRefs: [{ group: "", kind: Service, name: web, namespace: front }], abort: { httpStatus: 503 } }', 'spec.targetRefs[0].namespace',
      'is not supported: a policy attaches to targets in its own namespace'],
    ['a target twice', `{ targetRefs: [{ group: "", kind: Service, name: web }, { group: "", kind: Service, name: web }], abort: { httpStatus: 503 } }`, 'spec.targetRefs[1]',
      'duplicate of spec.targetRefs[0]'],
    ['neither delay nor abort', `{ targetRefs: ${SERVICE} }`, 'spec', 'must set delay, abort or both'],
    ['a delay without fixedDelay', `{ targetRefs: ${SERVICE}, delay: { percentage: 50 } }`, 'spec.delay.fixedDelay', 'is required, such as "2s" or "500ms"'],
    ['a delay of 0s', `{ targetRefs: ${SERVICE}, delay: { fixedDelay: 0s } }`, 'spec.delay.fixedDelay', 'must be at least 1ms, got "0s"'],
    ['a percentage above 100', `{ targetRefs: ${SERVICE}, delay: { fixedDelay: 1s, percentage: 150 } }`, 'spec.delay.percentage', 'must be a number between 0 and 100, got number 150'],
    ['a percentage as a string', `{ targetRefs: ${SERVICE}, abort: { httpStatus: 500, percentage: "50%" } }`, 'spec.abort.percentage', 'must be a number between 0 and 100, got "50%"'],
    ['both abort statuses', `{ targetRefs: ${SERVICE}, abort: { httpStatus: 503, grpcStatus: UNAVAILABLE } }`, 'spec.abort', 'must set exactly one of httpStatus (HTTP) and grpcStatus (gRPC)'],
    ['no abort status', `{ targetRefs: ${SERVICE}, abort: { percentage: 10 } }`, 'spec.abort', 'must set exactly one of httpStatus (HTTP) and grpcStatus (gRPC)'],
    ['an HTTP status of 100', `{ targetRefs: ${SERVICE}, abort: { httpStatus: 100 } }`, 'spec.abort.httpStatus', 'must be an integer between 200 and 599, got number 100'],
    ['gRPC status OK', `{ targetRefs: ${SERVICE}, abort: { grpcStatus: OK } }`, 'spec.abort.grpcStatus',
      'must be a gRPC status name (CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED) or its number 1 to 16, got "OK"'],
    ['gRPC status 17', `{ targetRefs: ${SERVICE}, abort: { grpcStatus: 17 } }`, 'spec.abort.grpcStatus',
      'must be a gRPC status name (CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED) or its number 1 to 16, got number 17'],
    ['an unknown field', `{ targetRefs: ${SERVICE}, abort: { httpStatus: 503 }, selector: {} }`, 'spec.selector', 'unknown field; accepted: targetRefs, delay, abort'],
  ];

  for (const [what, spec, field, reason] of invalid) {
    it(`rejects ${what} alone and keeps the last good version`, () => {
      const good = apply(null, fault(`{ targetRefs: ${SERVICE}, abort: { httpStatus: 500 } }`));
      const next = apply(good, fault(spec));
      assert.deepEqual(next.rejections, [{ resource: 'FaultInjection shop/chaos', field, reason }]);
      assert.deepEqual(next.faultInjections.get('shop/chaos'), good.faultInjections.get('shop/chaos'));
    });
  }
});

describe('LocalRateLimit validation', () => {
  it('reads the token bucket, with one token per fill by default', () => {
    const state = apply(null, [
      limit(`{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 100, tokensPerFill: 10, fillInterval: 1s } }`),
      limit('{ targetRefs: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, name: web }], tokenBucket: { maxTokens: 5, fillInterval: 200ms } }', 'route'),
    ].join('---\n'));
    assert.deepEqual(state.rejections, []);
    assert.deepEqual(state.localRateLimits.get('shop/limit'), {
      namespace: 'shop', name: 'limit', targetRefs: [{ kind: 'Service', name: 'web' }], tokenBucket: { maxTokens: 100, tokensPerFill: 10, fillIntervalMs: 1000 },
    });
    assert.deepEqual(state.localRateLimits.get('shop/route')?.tokenBucket, { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 200 });
  });

  const invalid: Array<[string, string, string, string]> = [
    ['no token bucket', `{ targetRefs: ${SERVICE} }`, 'spec.tokenBucket', 'is required: { maxTokens, tokensPerFill, fillInterval }'],
    ['no maxTokens', `{ targetRefs: ${SERVICE}, tokenBucket: { fillInterval: 1s } }`, 'spec.tokenBucket.maxTokens', 'is required'],
    ['maxTokens 0', `{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 0, fillInterval: 1s } }`, 'spec.tokenBucket.maxTokens', 'must be an integer between 1 and 4294967295, got number 0'],
    ['tokensPerFill 0', `{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 1, tokensPerFill: 0, fillInterval: 1s } }`, 'spec.tokenBucket.tokensPerFill',
      'must be an integer between 1 and 4294967295, got number 0'],
    ['no fillInterval', `{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 1 } }`, 'spec.tokenBucket.fillInterval', 'is required, such as "1s"'],
    ['a fillInterval of 0s', `{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 1, fillInterval: 0s } }`, 'spec.tokenBucket.fillInterval', 'must be at least 1ms, got "0s"'],
    ['an unknown bucket field', `{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 1, fillInterval: 1s, burst: 2 } }`, 'spec.tokenBucket.burst',
      'unknown field; accepted: maxTokens, tokensPerFill, fillInterval'],
  ];

  for (const [what, spec, field, reason] of invalid) {
    it(`rejects ${what} alone and keeps the last good version`, () => {
      const good = apply(null, limit(`{ targetRefs: ${SERVICE}, tokenBucket: { maxTokens: 10, fillInterval: 1s } }`));
      const next = apply(good, limit(spec));
      assert.deepEqual(next.rejections, [{ resource: 'LocalRateLimit shop/limit', field, reason }]);
      assert.deepEqual(next.localRateLimits.get('shop/limit'), good.localRateLimits.get('shop/limit'));
    });
  }
});
