// One request's trip upstream: pick an endpoint, take a circuit-breaker slot, send over the
// pool, and retry with Envoy's semantics — connect failures and refused streams always (no
// byte was processed), resets and per-try timeouts only for idempotent requests unless the
// route asked for retries, listed status codes when the route lists them; another endpoint
// each time, jittered exponential backoff, within the retry budget, while the body can be
// replayed. Outcomes feed the balancer (latency) and outlier detection.
import { setTimeout as sleep } from 'node:timers/promises';
import { retryBackoffMs } from '../../balance/backoff.js';
import type { Endpoint } from '../../state/mesh-index.js';
import type { ResponseFlag } from '../../state/outcome.js';
import type { Cluster } from '../cluster.js';
import { GrpcCode } from '../../http/grpc-status.js';
import type { Dial, UpstreamPool } from './upstream-pool.js';
import { UpstreamError, type UpstreamRequest, type UpstreamResponse } from './upstream.js';

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** Response statuses that are retried. */
  codes: ReadonlySet<number>;
  backoffBaseMs: number;
  /** The route configured retries: resets of non-idempotent requests are retried too. */
  asked: boolean;
}

/** Envoy / Istio's default: two retries of failures that cannot have reached the app twice. */
export const DEFAULT_RETRY: RetryPolicy = { retries: 2, codes: new Set(), backoffBaseMs: 25, asked: false };

/** What the proxy answers itself. */
export interface LocalReply {
  status: number;
  flag: ResponseFlag;
  message: string;
  /** Overrides the HTTP→gRPC mapping, e.g. DEADLINE_EXCEEDED for a timeout. */
  grpcStatus?: number;
  headers?: Record<string, string>;
}

export interface ForwardPlan {
  cluster: Cluster;
  protocol: 'h1' | 'h2';
  request: UpstreamRequest;
  retry: RetryPolicy;
  perTryTimeoutMs?: number;
  hashKey?: string;
  /** Pool key and dialer of an endpoint (bound to the source pod). */
  connect(endpoint: Endpoint): { key: string; dial: Dial };
  /** Aborted when the client is gone or the overall timeout fired. */
  signal: AbortSignal;
}

export type ForwardResult =
  | { response: UpstreamResponse; endpoint: Endpoint; attempts: number; /** Call when the response body is over. */ done(): void }
  | { local: LocalReply; attempts: number };

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export async function forward(pool: UpstreamPool, plan: ForwardPlan): Promise<ForwardResult> {
  const { cluster, request, retry, signal } = plan;
  const tried = new Set<string>();
  let retryRelease: (() => void) | null = null;
  for (let attempt = 1; ; attempt += 1) {
    const endpoint = cluster.endpoints.pick({ ...(plan.hashKey !== undefined ? { hashKey: plan.hashKey } : {}), avoid: tried });
    if (!endpoint) {
      retryRelease?.();
      return { local: { status: 503, flag: 'UH', message: `no healthy upstream for ${cluster.name}` }, attempts: attempt - 1 };
    }
    tried.add(`${endpoint.ip}:${endpoint.port}`);
    const admission = await cluster.admit(plan.protocol, signal);
    if ('overflow' in admission) {
      retryRelease?.();
      const local: LocalReply = { status: 503, flag: 'UO', message: `upstream overflow: ${admission.overflow}`, headers: { 'x-envoy-overloaded': 'true' } };
      return { local, attempts: attempt - 1 };
    }
    const outcome = await tryOnce(pool, plan, endpoint);
    retryRelease?.();
    retryRelease = null;

    const again = attempt <= retry.retries && !signal.aborted && request.body.replayable && retriable(outcome, request.method, retry);
    // As Envoy: the budget is taken when deciding to retry and held through the backoff and
    // the retry; without room the client gets this attempt's own answer (retry overflow).
    retryRelease = again ? cluster.retry() : null;
    if (!retryRelease) {
      if ('response' in outcome) return { response: outcome.response, endpoint, attempts: attempt, done: once(() => admission.release()) };
      admission.release();
      return { local: failureReply(outcome.error), attempts: attempt };
    }
    // The body waits for the next attempt; an answer that is kept streams the rest of the body
    // to its attempt (a call that streams both ways), so only a retried one detaches it.
    request.body.detach();
    if ('response' in outcome) {
      // The answered attempt kept the body streaming to it (a gRPC stream sends on after the
      // response head); the retry takes it over.
      request.body.detach();
      // Drain the refused answer so its connection can serve again.
      outcome.response.body.once('close', () => admission.release());
      outcome.response.body.once('end', () => admission.release());
      outcome.response.body.resume();
    } else admission.release();
    try {
      await sleep(retryBackoffMs(attempt, retry.backoffBaseMs), undefined, { signal });
    } catch {
      retryRelease();
      return { local: { status: 503, flag: 'DC', message: 'request abandoned before its retry' }, attempts: attempt };
    }
  }
}

type Outcome = { response: UpstreamResponse } | { error: UpstreamError };

async function tryOnce(pool: UpstreamPool, plan: ForwardPlan, endpoint: Endpoint): Promise<Outcome> {
  const handle = plan.cluster.endpoints.begin(endpoint);
  const { key, dial } = plan.connect(endpoint);
  const attempt = pool.send(plan.protocol, key, dial, plan.request, plan.cluster.limits);
  let timedOut = false;
  const cancel = () => attempt.cancel();
  const timer = plan.perTryTimeoutMs
    ? setTimeout(() => {
        timedOut = true;
        attempt.cancel();
      }, plan.perTryTimeoutMs)
    : undefined;
  plan.signal.addEventListener('abort', cancel, { once: true });
  try {
    const response = await attempt.response;
    handle.end({ status: response.status, connectMs: attempt.connectMs() });
    return { response };
  } catch (err) {
    plan.request.body.detach();
    const error = timedOut
      ? new UpstreamError('timeout', `upstream request timeout after ${plan.perTryTimeoutMs} ms`, 'UT')
      : err instanceof UpstreamError
        ? err
        : new UpstreamError('reset', (err as Error).message, 'UR');
    handle.end({ failure: error.kind === 'refused-stream' ? 'reset' : error.kind });
    plan.request.body.detach();
    return { error };
  } finally {
    clearTimeout(timer);
    plan.signal.removeEventListener('abort', cancel);
  }
}

function retriable(outcome: Outcome, method: string, policy: RetryPolicy): boolean {
  if ('response' in outcome) return policy.codes.has(outcome.response.status);
  const { kind, status } = outcome.error;
  // A destination that refused by policy (403) refuses again.
  if (status === 403) return false;
  if (kind === 'connect' || kind === 'refused-stream') return true;
  return policy.asked || IDEMPOTENT.has(method);
}

function failureReply(error: UpstreamError): LocalReply {
  const flag = error.flag;
  if (error.status === 403) return { status: 403, flag: '-', message: 'RBAC: access denied' };
  if (error.kind === 'timeout') return { status: 504, flag, message: error.message, grpcStatus: GrpcCode.DEADLINE_EXCEEDED };
  const reason = error.kind === 'connect' ? 'connection failure' : error.kind === 'refused-stream' ? 'refused stream' : 'remote reset';
  return { status: 503, flag, message: `upstream connect error or disconnect/reset before headers. reset reason: ${reason}: ${error.message}` };
}

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}
