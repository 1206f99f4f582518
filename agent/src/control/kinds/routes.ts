// gateway.networking.k8s.io HTTPRoute and GRPCRoute attached to Services (GAMMA): the
// routing the outbound proxy applies to calls to a Service. Checks are the CRD's (limits,
// patterns, CEL rules) with Gateway API's defaults filled in, so the data path reads no
// optional match or filter setting that has a default.
import type { BackendRef, MeshRoute, PathMatch, RouteMatch, RouteRule } from '../../state/model.js';
import { readDuration } from '../duration.js';
import { FieldErrors, checkFields, nameProblem, readArray, readInt, readList, readObject, readString, show, type Obj } from '../fields.js';
import type { AnyKindValidator, KindValidator, ObjectMeta } from '../resource.js';
import { readFilters, type FilterContext, type FilterType } from './route-filters.js';
import {
  GATEWAY_GROUP,
  PATH_CHARS,
  checkHostnames,
  readMapping,
  readMatchType,
  readParentRefs,
  readServicePortRef,
  readValueMatches,
  regexProblem,
} from './route-fields.js';

type RouteKind = MeshRoute['kind'];

const FILTERS: Record<RouteKind, readonly FilterType[]> = {
  HTTPRoute: ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror'],
  GRPCRoute: ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'],
};
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const INT32_MAX = 2_147_483_647;
// Gateway API's CEL limit on matches summed over a route's rules.
const MAX_MATCHES = 128;
const SESSION_PERSISTENCE = 'is not supported by nodemesh';

const HTTP_DEFAULT_MATCH: RouteMatch = { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] };
const GRPC_MATCH_ALL: RouteMatch = { headers: [], queryParams: [] };

function routeKind<C extends 'httpRoutes' | 'grpcRoutes'>(apiVersion: string, kind: RouteKind, collection: C): KindValidator<C> {
  return {
    apiVersion,
    kind,
    collection,
    namespaced: true,
    nameFormat: 'dns1123-subdomain',
    validate: (object, meta, errors) => readRoute(object, meta, kind, errors),
  };
}

export const routeKinds: readonly AnyKindValidator[] = [
  routeKind(`${GATEWAY_GROUP}/v1`, 'HTTPRoute', 'httpRoutes'),
  routeKind(`${GATEWAY_GROUP}/v1beta1`, 'HTTPRoute', 'httpRoutes'),
  routeKind(`${GATEWAY_GROUP}/v1`, 'GRPCRoute', 'grpcRoutes'),
];

function readRoute(object: Obj, meta: ObjectMeta, kind: RouteKind, errors: FieldErrors): MeshRoute {
  const spec = readObject(object.spec, 'spec', errors) ?? {};
  checkFields(spec, 'spec', ['parentRefs', 'hostnames', 'rules'], errors, {
    useDefaultGateways: 'attaches the route to default Gateways, which nodemesh does not have; name a Service in parentRefs',
  });
  const parentRefs = readParentRefs(spec.parentRefs, meta.namespace, errors);
  checkHostnames(spec.hostnames, errors);
  const route: MeshRoute = { kind, namespace: meta.namespace, name: meta.name, parentRefs, rules: readRules(spec.rules, kind, meta.namespace, errors) };
  if (meta.createdMs !== undefined) route.createdMs = meta.createdMs;
  return route;
}

function readRules(value: unknown, kind: RouteKind, namespace: string, errors: FieldErrors): RouteRule[] {
  // The CRD's default for HTTPRoute: one rule matching every request, without backends (500).
  if ((value === undefined || value === null) && kind === 'HTTPRoute') return [{ matches: [HTTP_DEFAULT_MATCH], filters: [], backendRefs: [] }];
  if (Array.isArray(value) && value.length === 0 && kind === 'HTTPRoute') {
    errors.add('spec.rules', 'must not be empty: remove it for the default rule, or list rules');
  }
  const names = new Map<string, number>();
  const rules = readList(value, 'spec.rules', errors, 16).flatMap((entry, i) => {
    const field = `spec.rules[${i}]`;
    const raw = readMapping(entry, field, errors);
    if (!raw) return [];
    const rule = kind === 'HTTPRoute' ? readHttpRule(raw, field, namespace, errors) : readGrpcRule(raw, field, namespace, errors);
    if (rule.name !== undefined) {
      const first = names.get(rule.name);
      if (first !== undefined) errors.add(`${field}.name`, `duplicate rule name ${show(rule.name)}, already used by spec.rules[${first}]`);
      else names.set(rule.name, i);
    }
    return [rule];
  });
  const matches = rules.reduce((n, r) => n + r.matches.length, 0);
  if (matches > MAX_MATCHES) errors.add('spec.rules', `must have at most ${MAX_MATCHES} matches over all rules, got ${matches}`);
  return rules;
}

/** name, filters and backendRefs, read the same way for both kinds once the matches are known. */
function readRuleBody(raw: Obj, field: string, matches: RouteMatch[], kind: RouteKind, namespace: string, errors: FieldErrors): RouteRule {
  const ctx: FilterContext = {
    namespace,
    kind,
    allowed: FILTERS[kind],
    singlePrefixMatch: matches.length === 1 && matches[0]!.path?.type === 'PathPrefix',
  };
  const rule: RouteRule = {
    matches,
    filters: readFilters(raw.filters, `${field}.filters`, ctx, errors),
    backendRefs: readBackendRefs(raw.backendRefs, `${field}.backendRefs`, ctx, errors),
  };
  const name = readString(raw.name, `${field}.name`, errors);
  if (name !== undefined) {
    const problem = nameProblem(name, 'dns1123-subdomain');
    if (problem) errors.add(`${field}.name`, problem);
    rule.name = name;
  }
  if (rule.filters.some((f) => f.type === 'RequestRedirect') && Array.isArray(raw.backendRefs) && raw.backendRefs.length > 0) {
    errors.add(`${field}.backendRefs`, 'must be empty when the rule has a RequestRedirect filter: the redirect answers every request of the rule');
  }
  return rule;
}

/** A rule's backendRefs: Services with a port, weight 0 to 1000000 (default 1), optional filters. */
function readBackendRefs(value: unknown, field: string, ctx: FilterContext, errors: FieldErrors): BackendRef[] {
  return readList(value, field, errors, 16).flatMap((entry, i) => {
    const at = `${field}[${i}]`;
    const ref = readMapping(entry, at, errors);
    if (!ref) return [];
    const target = readServicePortRef(ref, at, ctx.namespace, errors, ['weight', 'filters']);
    const weight = readInt(ref.weight, `${at}.weight`, errors, 0, 1_000_000) ?? 1;
    const filters = readFilters(ref.filters, `${at}.filters`, ctx, errors);
    return target ? [{ ...target, weight, filters }] : [];
  });
}

function readHttpRule(raw: Obj, field: string, namespace: string, errors: FieldErrors): RouteRule {
  checkFields(raw, field, ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry'], errors, { sessionPersistence: SESSION_PERSISTENCE });
  const list = readList(raw.matches, `${field}.matches`, errors, 64);
  const matches = list.length === 0 ? [HTTP_DEFAULT_MATCH] : list.flatMap((m, i) => readHttpMatch(m, `${field}.matches[${i}]`, errors) ?? []);
  const rule = readRuleBody(raw, field, matches, 'HTTPRoute', namespace, errors);
  const timeouts = readTimeouts(raw.timeouts, `${field}.timeouts`, errors);
  const retry = readRetry(raw.retry, `${field}.retry`, errors);
  if (timeouts) rule.timeouts = timeouts;
  if (retry) rule.retry = retry;
  return rule;
}

function readHttpMatch(value: unknown, field: string, errors: FieldErrors): RouteMatch | undefined {
  const raw = readMapping(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['path', 'headers', 'queryParams', 'method'], errors);
  const match: RouteMatch = {
    path: readPathMatch(raw.path, `${field}.path`, errors),
    headers: readValueMatches(raw.headers, `${field}.headers`, errors, 'header'),
    queryParams: readValueMatches(raw.queryParams, `${field}.queryParams`, errors, 'query'),
  };
  if (raw.method !== undefined && raw.method !== null) {
    if (METHODS.includes(raw.method as string)) match.method = raw.method as string;
    else errors.add(`${field}.method`, `must be one of ${METHODS.join(', ')}, got ${show(raw.method)}`);
  }
  return match;
}

// Gateway API's CEL rules on Exact and PathPrefix values.
const PATH_RULES: ReadonlyArray<[(v: string) => boolean, string]> = [
  [(v) => !v.startsWith('/'), 'must start with "/"'],
  [(v) => v.includes('//'), 'must not contain "//"'],
  [(v) => v.includes('/./') || v.endsWith('/.'), 'must not contain "/./" or end with "/."'],
  [(v) => v.includes('/../') || v.endsWith('/..'), 'must not contain "/../" or end with "/.."'],
  [(v) => /%2f/i.test(v), 'must not contain an encoded "/" (%2F)'],
  [(v) => !PATH_CHARS.test(v), 'must contain only URL path characters (no spaces, "?" or "#"; %-encode others)'],
];

function readPathMatch(value: unknown, field: string, errors: FieldErrors): PathMatch {
  const raw = readObject(value, field, errors);
  if (!raw) return { type: 'PathPrefix', value: '/' };
  checkFields(raw, field, ['type', 'value'], errors);
  const type = raw.type ?? 'PathPrefix';
  const path = readString(raw.value, `${field}.value`, errors) ?? '/';
  if (type !== 'Exact' && type !== 'PathPrefix' && type !== 'RegularExpression') {
    errors.add(`${field}.type`, `must be Exact, PathPrefix or RegularExpression, got ${show(type)}`);
    return { type: 'PathPrefix', value: path };
  }
  if (path.length > 1024) errors.add(`${field}.value`, `must be at most 1024 characters, got ${path.length}`);
  else if (type === 'RegularExpression') {
    const problem = regexProblem(path);
    if (problem) errors.add(`${field}.value`, problem);
  } else {
    const broken = PATH_RULES.find(([fails]) => fails(path));
    if (broken) errors.add(`${field}.value`, `${broken[1]} when type is ${type}, got ${show(path)}`);
  }
  return { type, value: path };
}

function readTimeouts(value: unknown, field: string, errors: FieldErrors): RouteRule['timeouts'] {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['request', 'backendRequest'], errors);
  const requestMs = readDuration(raw.request, `${field}.request`, errors, 'gateway', 0);
  const backendRequestMs = readDuration(raw.backendRequest, `${field}.backendRequest`, errors, 'gateway', 0);
  if (requestMs && backendRequestMs !== undefined && backendRequestMs > requestMs) {
    errors.add(`${field}.backendRequest`, `must not be longer than the request timeout (${String(raw.request)}), which covers every backend request; got ${show(raw.backendRequest)}`);
  }
  const timeouts: NonNullable<RouteRule['timeouts']> = {};
  if (requestMs !== undefined) timeouts.requestMs = requestMs;
  if (backendRequestMs !== undefined) timeouts.backendRequestMs = backendRequestMs;
  return timeouts;
}

function readRetry(value: unknown, field: string, errors: FieldErrors): RouteRule['retry'] {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['codes', 'attempts', 'backoff'], errors);
  const codes = readArray(raw.codes, `${field}.codes`, errors).flatMap((c, i) => {
    if (typeof c === 'number' && Number.isInteger(c) && c >= 400 && c <= 599) return [c];
    errors.add(`${field}.codes[${i}]`, `must be an HTTP status code between 400 and 599, got ${show(c)}`);
    return [];
  });
  const retry: NonNullable<RouteRule['retry']> = { codes };
  const attempts = readInt(raw.attempts, `${field}.attempts`, errors, 0, INT32_MAX);
  const backoffMs = readDuration(raw.backoff, `${field}.backoff`, errors, 'gateway', 0);
  if (attempts !== undefined) retry.attempts = attempts;
  if (backoffMs !== undefined) retry.backoffMs = backoffMs;
  return retry;
}

function readGrpcRule(raw: Obj, field: string, namespace: string, errors: FieldErrors): RouteRule {
  checkFields(raw, field, ['name', 'matches', 'filters', 'backendRefs'], errors, { sessionPersistence: SESSION_PERSISTENCE });
  const list = readList(raw.matches, `${field}.matches`, errors, 64);
  const matches = list.length === 0 ? [GRPC_MATCH_ALL] : list.flatMap((m, i) => readGrpcMatch(m, `${field}.matches[${i}]`, errors) ?? []);
  return readRuleBody(raw, field, matches, 'GRPCRoute', namespace, errors);
}

// The CRD's patterns for Exact service and method names.
const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

function readGrpcMatch(value: unknown, field: string, errors: FieldErrors): RouteMatch | undefined {
  const raw = readMapping(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['method', 'headers'], errors);
  const match: RouteMatch = { headers: readValueMatches(raw.headers, `${field}.headers`, errors, 'header'), queryParams: [] };
  const method = readObject(raw.method, `${field}.method`, errors);
  if (!method) return match;
  const at = `${field}.method`;
  checkFields(method, at, ['type', 'service', 'method'], errors);
  const type = readMatchType(method.type, `${at}.type`, errors);
  const grpc: NonNullable<RouteMatch['grpc']> = { type: type ?? 'Exact' };
  for (const [key, pattern, what] of [
    ['service', GRPC_SERVICE, 'a fully qualified gRPC service name such as "shop.v1.Cart"'],
    ['method', GRPC_METHOD, 'a gRPC method name such as "GetCart"'],
  ] as const) {
    const name = readString(method[key], `${at}.${key}`, errors);
    if (name === undefined) continue;
    const problem =
      name.length > 1024 ? `must be at most 1024 characters, got ${name.length}`
      : type === 'RegularExpression' ? regexProblem(name)
      : pattern.test(name) ? undefined
      : `must be ${what} when type is Exact, got ${show(name)}`;
    if (problem) errors.add(`${at}.${key}`, problem);
    else grpc[key] = name;
  }
  if (method.service === undefined && method.method === undefined) errors.add(at, 'must set service, method or both');
  match.grpc = grpc;
  return match;
}
