// nodemesh.io/v1alpha1 FaultInjection and LocalRateLimit: Envoy's fault and local rate limit
// filters as Gateway API-style policies, attached by targetRefs to Services and routes of
// their own namespace (looked up by state/traffic.ts). Durations use Gateway API's syntax.
import type { MeshFaultInjection, MeshLocalRateLimit, PolicyTargetRef } from '../../state/model.js';
import { readDuration } from '../duration.js';
import { FieldErrors, checkFields, isObj, nameProblem, readInt, readList, readObject, readRequiredString, show, type Obj } from '../fields.js';
import type { AnyKindValidator, KindValidator } from '../resource.js';
import { GATEWAY_GROUP, readMapping } from './route-fields.js';

const API_VERSION = 'nodemesh.io/v1alpha1';
const UINT32_MAX = 4_294_967_295;

// gRPC status codes by name (grpc/doc/statuscodes.md); 0 (OK) is no fault.
const GRPC_CODES = [
  'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE',
  'DATA_LOSS', 'UNAUTHENTICATED',
];

const faultInjectionKind: KindValidator<'faultInjections'> = {
  apiVersion: API_VERSION,
  kind: 'FaultInjection',
  collection: 'faultInjections',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshFaultInjection {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    checkFields(spec, 'spec', ['targetRefs', 'delay', 'abort'], errors);
    const fault: MeshFaultInjection = { namespace: meta.namespace, name: meta.name, targetRefs: readTargetRefs(spec.targetRefs, errors) };
    const delay = readObject(spec.delay, 'spec.delay', errors);
    if (delay) {
      checkFields(delay, 'spec.delay', ['fixedDelay', 'percentage'], errors);
      if (delay.fixedDelay === undefined || delay.fixedDelay === null) errors.add('spec.delay.fixedDelay', 'is required, such as "2s" or "500ms"');
      const fixedDelayMs = readDuration(delay.fixedDelay, 'spec.delay.fixedDelay', errors, 'gateway', 1);
      const percentage = readPercentage(delay, 'spec.delay', errors);
      if (fixedDelayMs !== undefined) fault.delay = { fixedDelayMs, percentage };
    }
    const abort = readObject(spec.abort, 'spec.abort', errors);
    if (abort) {
      const percentage = readPercentage(abort, 'spec.abort', errors);
      const status = readAbortStatus(abort, errors);
      if (status) fault.abort = { ...status, percentage };
    }
    if ((spec.delay ?? spec.abort ?? null) === null) errors.add('spec', 'must set delay, abort or both');
    return fault;
  },
};

const localRateLimitKind: KindValidator<'localRateLimits'> = {
  apiVersion: API_VERSION,
  kind: 'LocalRateLimit',
  collection: 'localRateLimits',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshLocalRateLimit {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    checkFields(spec, 'spec', ['targetRefs', 'tokenBucket'], errors);
    const targetRefs = readTargetRefs(spec.targetRefs, errors);
    const field = 'spec.tokenBucket';
    const bucket = readObject(spec.tokenBucket, field, errors) ?? {};
    if (spec.tokenBucket === undefined || spec.tokenBucket === null) errors.add(field, 'is required: { maxTokens, tokensPerFill, fillInterval }');
    else if (isObj(spec.tokenBucket)) {
      checkFields(bucket, field, ['maxTokens', 'tokensPerFill', 'fillInterval'], errors);
      if (bucket.maxTokens === undefined || bucket.maxTokens === null) errors.add(`${field}.maxTokens`, 'is required');
      if (bucket.fillInterval === undefined || bucket.fillInterval === null) errors.add(`${field}.fillInterval`, 'is required, such as "1s"');
    }
    return {
      namespace: meta.namespace,
      name: meta.name,
      targetRefs,
      tokenBucket: {
        maxTokens: readInt(bucket.maxTokens, `${field}.maxTokens`, errors, 1, UINT32_MAX) ?? 0,
        tokensPerFill: readInt(bucket.tokensPerFill, `${field}.tokensPerFill`, errors, 1, UINT32_MAX) ?? 1,
        fillIntervalMs: readDuration(bucket.fillInterval, `${field}.fillInterval`, errors, 'gateway', 1) ?? 0,
      },
    };
  },
};

export const nodemeshPolicyKinds: readonly AnyKindValidator[] = [faultInjectionKind, localRateLimitKind];

/** spec.targetRefs: Services and routes in the policy's namespace, at least one, each once. */
function readTargetRefs(value: unknown, errors: FieldErrors): PolicyTargetRef[] {
  const field = 'spec.targetRefs';
  const list = readList(value, field, errors, 16);
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) {
    errors.add(field, 'is required: at least one { group: "", kind: Service, name } or { group: gateway.networking.k8s.io, kind: HTTPRoute or GRPCRoute, name }');
  }
  const out: PolicyTargetRef[] = [];
  const seen = new Map<string, number>();
  list.forEach((entry, i) => {
    const at = `${field}[${i}]`;
    const ref = readMapping(entry, at, errors);
    if (!ref) return;
    checkFields(ref, at, ['group', 'kind', 'name'], errors, {
      namespace: 'is not supported: a policy attaches to targets in its own namespace',
      sectionName: 'is not supported: a policy applies to the whole Service or route',
    });
    const kind = readTargetKind(ref, at, errors);
    const name = readRequiredString(ref.name, `${at}.name`, errors);
    const problem = name === undefined || !kind ? undefined : nameProblem(name, kind === 'Service' ? 'dns1035-label' : 'dns1123-subdomain');
    if (problem) errors.add(`${at}.name`, problem);
    if (!kind || name === undefined || problem) return;
    const first = seen.get(`${kind}/${name}`);
    if (first !== undefined) return errors.add(at, `duplicate of ${field}[${first}]`);
    seen.set(`${kind}/${name}`, i);
    out.push({ kind, name });
  });
  return out;
}

function readTargetKind(ref: Obj, field: string, errors: FieldErrors): PolicyTargetRef['kind'] | undefined {
  const { group, kind } = ref;
  if (group === undefined || group === null) {
    errors.add(`${field}.group`, `is required: "" for a Service, ${GATEWAY_GROUP} for a route`);
    return undefined;
  }
  if (kind === 'Service' && group === '') return kind;
  if ((kind === 'HTTPRoute' || kind === 'GRPCRoute') && group === GATEWAY_GROUP) return kind;
  if (kind === 'Service' || kind === 'HTTPRoute' || kind === 'GRPCRoute') {
    errors.add(`${field}.group`, `must be ${kind === 'Service' ? '""' : GATEWAY_GROUP} for kind ${kind}, got ${show(group)}`);
  } else {
    errors.add(`${field}.kind`, `must be Service, HTTPRoute or GRPCRoute, got ${show(kind)}`);
  }
  return undefined;
}

/** percentage: 0 to 100, fractions allowed; default 100. */
function readPercentage(raw: Obj, field: string, errors: FieldErrors): number {
  const value = raw.percentage;
  if (value === undefined || value === null) return 100;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 100) return value;
  errors.add(`${field}.percentage`, `must be a number between 0 and 100, got ${show(value)}`);
  return 100;
}

function readAbortStatus(abort: Obj, errors: FieldErrors): { httpStatus: number } | { grpcStatus: number } | undefined {
  checkFields(abort, 'spec.abort', ['httpStatus', 'grpcStatus', 'percentage'], errors);
  const httpStatus = abort.httpStatus ?? undefined;
  const grpcStatus = abort.grpcStatus ?? undefined;
  if ((httpStatus === undefined) === (grpcStatus === undefined)) {
    errors.add('spec.abort', 'must set exactly one of httpStatus (HTTP) and grpcStatus (gRPC)');
    return undefined;
  }
  if (httpStatus !== undefined) {
    const status = readInt(httpStatus, 'spec.abort.httpStatus', errors, 200, 599);
    return status === undefined ? undefined : { httpStatus: status };
  }
  const byName = typeof grpcStatus === 'string' ? GRPC_CODES.indexOf(grpcStatus) + 1 : 0;
  if (byName > 0) return { grpcStatus: byName };
  if (typeof grpcStatus === 'number' && Number.isInteger(grpcStatus) && grpcStatus >= 1 && grpcStatus <= 16) return { grpcStatus };
  errors.add('spec.abort.grpcStatus', `must be a gRPC status name (${GRPC_CODES.join(', ')}) or its number 1 to 16, got ${show(grpcStatus)}`);
  return undefined;
}
