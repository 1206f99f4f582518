// nodemesh.io/v1alpha1 policies the outbound proxy applies before routing a request upstream:
// LocalRateLimit (Envoy's local token bucket, one per policy on this node: full at start,
// tokensPerFill added every fillInterval up to maxTokens; an empty bucket answers 429, gRPC
// RESOURCE_EXHAUSTED) and FaultInjection (delay, then abort, each for its percentage of
// requests). Policies attached to the matched route win over those attached to the Service.
import { setTimeout as sleep } from 'node:timers/promises';
import { attachedPolicies, type AttachedPolicies } from '../../state/traffic.js';
import { objectKey, type MeshLocalRateLimit, type MeshState, type PolicyTargetRef } from '../../state/model.js';
import type { LocalReply } from './forwarder.js';
import { GrpcCode } from '../../http/grpc-status.js';

export type PolicyTarget = { kind: PolicyTargetRef['kind']; namespace: string; name: string };

interface Bucket {
  spec: MeshLocalRateLimit['tokenBucket'];
  tokens: number;
  filledAt: number;
}

export class LocalPolicies {
  readonly #buckets = new Map<string, Bucket>();
  readonly #lookups = new WeakMap<MeshState, Map<string, AttachedPolicies>>();
  readonly #random: () => number;
  readonly #now: () => number;

  constructor(opts: { random?: () => number; now?: () => number } = {}) {
    this.#random = opts.random ?? Math.random;
    this.#now = opts.now ?? Date.now;
  }

  /** A reply when the request is limited or aborted; resolves after any injected delay. */
  async apply(state: MeshState, targets: readonly PolicyTarget[], signal: AbortSignal): Promise<LocalReply | undefined> {
    const attached = targets.map((t) => this.#attached(state, t));
    const limits = attached.find((a) => a.rateLimits.length > 0)?.rateLimits ?? [];
    for (const limit of limits) {
      if (!this.#take(limit)) {
        return {
          status: 429,
          flag: 'RL',
          message: `local_rate_limited by LocalRateLimit ${objectKey(limit.namespace, limit.name)}`,
          grpcStatus: GrpcCode.RESOURCE_EXHAUSTED,
          headers: { 'x-envoy-ratelimited': 'true' },
        };
      }
    }
    const fault = attached.find((a) => a.faults.length > 0)?.faults[0];
    if (!fault) return undefined;
    if (fault.delay && this.#chance(fault.delay.percentage)) {
      await sleep(fault.delay.fixedDelayMs, undefined, { signal }).catch(() => {});
    }
    const abort = fault.abort;
    if (!abort || !this.#chance(abort.percentage)) return undefined;
    const message = `fault filter abort by FaultInjection ${objectKey(fault.namespace, fault.name)}`;
    if (abort.grpcStatus !== undefined) return { status: 200, flag: 'FI', message, grpcStatus: abort.grpcStatus };
    return { status: abort.httpStatus ?? 503, flag: 'FI', message };
  }

  /** Looked up once per configuration and target, not per request. */
  #attached(state: MeshState, target: PolicyTarget): AttachedPolicies {
    let byTarget = this.#lookups.get(state);
    if (!byTarget) {
      byTarget = new Map();
      this.#lookups.set(state, byTarget);
    }
    const key = `${target.kind} ${objectKey(target.namespace, target.name)}`;
    let found = byTarget.get(key);
    if (!found) {
      found = attachedPolicies(state, target);
      byTarget.set(key, found);
    }
    return found;
  }

  /** Buckets of policies no longer configured are dropped. */
  retain(state: MeshState): void {
    for (const key of this.#buckets.keys()) if (!state.localRateLimits.has(key)) this.#buckets.delete(key);
  }

  #chance(percentage: number): boolean {
    return this.#random() * 100 < percentage;
  }

  #take(limit: MeshLocalRateLimit): boolean {
    const key = objectKey(limit.namespace, limit.name);
    const now = this.#now();
    let bucket = this.#buckets.get(key);
    if (!bucket || (bucket.spec !== limit.tokenBucket && JSON.stringify(bucket.spec) !== JSON.stringify(limit.tokenBucket))) {
      bucket = { spec: limit.tokenBucket, tokens: limit.tokenBucket.maxTokens, filledAt: now };
      this.#buckets.set(key, bucket);
    }
    // The same bucket under a reloaded (equal) spec: compare by reference from now on.
    bucket.spec = limit.tokenBucket;
    const fills = Math.floor((now - bucket.filledAt) / bucket.spec.fillIntervalMs);
    if (fills > 0) {
      bucket.tokens = Math.min(bucket.spec.maxTokens, bucket.tokens + fills * bucket.spec.tokensPerFill);
      bucket.filledAt += fills * bucket.spec.fillIntervalMs;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
