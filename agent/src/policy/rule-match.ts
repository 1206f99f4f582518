// Whether one AuthorizationPolicy rule matches a request, with Istio's semantics: a rule
// matches when any `from` source, any `to` operation and every `when` condition match; within
// one source or operation every present field must match; a field matches when any of its
// values matches and none of its `not` values does.
//
// Identity: principals and namespaces come from the verified peer identity. A plaintext
// request has none, so it never matches `principals`/`namespaces` (even "*") and always
// matches `notPrincipals`/`notNamespaces` — as Envoy's RBAC and ztunnel do, which is what
// makes Istio's "DENY notPrincipals: ['*']" refuse plaintext.
//
// L4 (no `http` on the request): conditions on hosts, methods, paths or request headers
// cannot be evaluated. As Istio does for TCP traffic (sidecar RBAC generation, and ztunnel's
// policy conversion): in an ALLOW policy a rule with any such condition does not match
// (fail closed); in DENY and AUDIT policies those conditions are dropped and the rule
// matches on its other parts, so a DENY is only ever widened — a `to` entry with only HTTP
// fields then matches every connection. (ztunnel's own converter leaves such an entry
// empty, which its matcher treats as no match; we follow the documented intent, "enforced
// without the HTTP rules", as the Envoy-based sidecar does.)
import type { AuthorizationAction, AuthorizationCondition, AuthorizationOperation, AuthorizationRule, AuthorizationSource } from '../state/model.js';
import { inIpBlock, matchesPattern } from './match-value.js';
import type { AuthzRequest } from './request.js';

export function ruleMatches(rule: AuthorizationRule, action: AuthorizationAction, req: AuthzRequest): boolean {
  if (!req.http && action === 'ALLOW' && needsHttp(rule)) return false;
  const id = identity(req);
  return (
    (!rule.from || rule.from.some((s) => sourceMatches(s, id, req))) &&
    (!rule.to || rule.to.some((o) => operationMatches(o, req))) &&
    (rule.when ?? []).every((c) => conditionMatches(c, id, req))
  );
}

function needsHttp(rule: AuthorizationRule): boolean {
  return (rule.to ?? []).some(opNeedsHttp) || (rule.when ?? []).some((c) => headerName(c.key) !== undefined);
}

const opNeedsHttp = (o: AuthorizationOperation): boolean => !!(o.hosts ?? o.notHosts ?? o.methods ?? o.notMethods ?? o.paths ?? o.notPaths);

/**
 * Whether the rule can only be decided per HTTP request on this destination port: it has an
 * HTTP condition and its `to` operations do not all exclude the port. Conservative (a `when`
 * on destination.port is not considered): deciding at L7 when unsure is never less strict.
 */
export function ruleNeedsHttp(rule: AuthorizationRule, port: number): boolean {
  if (!needsHttp(rule)) return false;
  const p = String(port);
  return !rule.to || rule.to.some((o) => field(o.ports?.map(String), o.notPorts?.map(String), (v) => v === p));
}

interface Identity {
  principal?: string;
  namespace?: string;
}

function identity(req: AuthzRequest): Identity {
  const principal = req.source.principal?.replace(/^spiffe:\/\//, '');
  if (!principal) return {};
  const segments = principal.split('/');
  const namespace = segments[1] === 'ns' && segments[2] ? segments[2] : req.source.namespace;
  return namespace ? { principal, namespace } : { principal };
}

/** Both lists absent places no condition; `test` decides one value. */
function field(values: readonly string[] | undefined, notValues: readonly string[] | undefined, test: (v: string) => boolean): boolean {
  return (!values || values.some(test)) && (!notValues || !notValues.some(test));
}

const pattern = (actual: string | undefined) => (p: string): boolean => actual !== undefined && matchesPattern(p, actual);
const ipIn = (ip: string) => (block: string): boolean => inIpBlock(block, ip);

function sourceMatches(s: AuthorizationSource, id: Identity, req: AuthzRequest): boolean {
  const remote = req.source.remoteIp ?? req.source.ip;
  return (
    field(s.principals, s.notPrincipals, pattern(id.principal)) &&
    field(s.namespaces, s.notNamespaces, pattern(id.namespace)) &&
    field(s.ipBlocks, s.notIpBlocks, ipIn(req.source.ip)) &&
    field(s.remoteIpBlocks, s.notRemoteIpBlocks, ipIn(remote))
  );
}

function operationMatches(o: AuthorizationOperation, req: AuthzRequest): boolean {
  const port = String(req.destination.port);
  const ports = field(o.ports?.map(String), o.notPorts?.map(String), (p) => p === port);
  const http = req.http;
  // Reached without HTTP only for DENY and AUDIT: the HTTP fields are dropped (see above).
  if (!http) return ports;
  // Envoy matches the path without its query string or fragment.
  const path = http.path.replace(/[?#].*$/, '');
  return (
    ports &&
    field(o.hosts, o.notHosts, (p) => matchesPattern(p, http.host, true)) &&
    field(o.methods, o.notMethods, pattern(http.method)) &&
    field(o.paths, o.notPaths, pattern(path))
  );
}

function conditionMatches(c: AuthorizationCondition, id: Identity, req: AuthzRequest): boolean {
  const test = (value: (v: string) => boolean): boolean => field(c.values, c.notValues, value);
  switch (c.key) {
    case 'source.ip':
      return test(ipIn(req.source.ip));
    case 'remote.ip':
      return test(ipIn(req.source.remoteIp ?? req.source.ip));
    case 'destination.ip':
      return test(ipIn(req.destination.ip));
    case 'destination.port':
      return test((p) => p === String(req.destination.port));
    case 'source.principal':
      return test(pattern(id.principal));
    case 'source.namespace':
      return test(pattern(id.namespace));
  }
  const name = headerName(c.key);
  // Validation admits no other key; an unknown one matches nothing rather than everything.
  if (name === undefined) return false;
  if (!req.http) return true;
  return test(pattern(header(req.http.headers, name)));
}

function headerName(key: string): string | undefined {
  return /^request\.headers\[(.+)\]$/.exec(key)?.[1];
}

function header(headers: Record<string, string>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === lower) return value;
  return undefined;
}
