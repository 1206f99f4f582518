// security.istio.io AuthorizationPolicy: who may reach which workload, checked by the
// inbound proxy (policy/authorize.ts). Validation follows Istio's own (pkg/config/validation)
// and refuses, rather than ignores, whatever nodemesh cannot enforce: a policy that is only
// partly enforced fails open.
import type {
  AuthorizationAction,
  AuthorizationCondition,
  AuthorizationOperation,
  AuthorizationRule,
  AuthorizationSource,
  MeshAuthorizationPolicy,
} from '../../state/model.js';
import { FieldErrors, checkFields, readArray, readObject, readString, show, type Obj } from '../fields.js';
import type { KindValidator } from '../resource.js';
import {
  SECURITY_API_VERSIONS,
  hostPatternProblem,
  ipBlockProblem,
  methodPatternProblem,
  namespacePatternProblem,
  pathPatternProblem,
  principalProblem,
  readPorts,
  readSelector,
  readStrings,
  valuePatternProblem,
} from './security-fields.js';

const JWT = 'needs JWT authentication (RequestAuthentication), which nodemesh does not support';

const SPEC_UNSUPPORTED: Record<string, string> = {
  targetRef: 'is not supported: it attaches policies to waypoints and gateways, which nodemesh does not have; use spec.selector',
  targetRefs: 'is not supported: it attaches policies to waypoints and gateways, which nodemesh does not have; use spec.selector',
  provider: 'is not supported: it names the external authorizer of a CUSTOM policy',
};

export const authorizationPolicyKinds: ReadonlyArray<KindValidator<'authorizationPolicies'>> = SECURITY_API_VERSIONS.map((apiVersion) => ({
  apiVersion,
  kind: 'AuthorizationPolicy',
  collection: 'authorizationPolicies',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshAuthorizationPolicy {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    checkFields(spec, 'spec', ['selector', 'action', 'rules'], errors, SPEC_UNSUPPORTED);
    const action = readAction(spec.action, errors);
    if (action === 'DENY' && (spec.rules === undefined || spec.rules === null)) {
      // Istio's own rule: an ALLOW without rules allows nothing, a DENY without rules denies nothing.
      errors.add('spec.rules', 'is required with action DENY (without rules it never denies); add an empty rule {} to deny every request');
    }
    return {
      namespace: meta.namespace,
      name: meta.name,
      selector: readSelector(spec.selector, errors),
      action: action ?? 'ALLOW',
      rules: readArray(spec.rules, 'spec.rules', errors).flatMap((r, i) => readRule(r, `spec.rules[${i}]`, errors) ?? []),
    };
  },
}));

function readAction(value: unknown, errors: FieldErrors): AuthorizationAction | undefined {
  if (value === undefined || value === null) return 'ALLOW';
  if (value === 'ALLOW' || value === 'DENY' || value === 'AUDIT') return value;
  if (value === 'CUSTOM') errors.add('spec.action', 'CUSTOM needs an external authorizer, not supported');
  else errors.add('spec.action', `must be one of ALLOW, DENY, AUDIT, got ${show(value)}`);
  return undefined;
}

function readRule(value: unknown, field: string, errors: FieldErrors): AuthorizationRule | undefined {
  const raw = readObject(value, field, errors);
  if (!raw) {
    if (value === null || value === undefined) errors.add(field, 'must be a mapping; write {} for a rule that matches everything');
    return undefined;
  }
  checkFields(raw, field, ['from', 'to', 'when'], errors);
  const rule: AuthorizationRule = {};
  const from = readEntries(raw.from, `${field}.from`, 'source', errors, readSource);
  const to = readEntries(raw.to, `${field}.to`, 'operation', errors, readOperation);
  const when = readEntries(raw.when, `${field}.when`, undefined, errors, readCondition);
  if (from) rule.from = from;
  if (to) rule.to = to;
  if (when) rule.when = when;
  return rule;
}

/** `from[i].source`, `to[i].operation` or `when[i]`: a non-empty list of non-empty mappings. */
function readEntries<T>(
  value: unknown,
  field: string,
  wrapper: string | undefined,
  errors: FieldErrors,
  read: (obj: Obj, field: string, errors: FieldErrors) => T,
): T[] | undefined {
  if (value === undefined || value === null) return undefined;
  const list = readArray(value, field, errors);
  if (Array.isArray(value) && list.length === 0) errors.add(field, 'must not be empty: remove the field to place no condition');
  const out: T[] = [];
  list.forEach((entry, i) => {
    let at = `${field}[${i}]`;
    let obj = readObject(entry, at, errors);
    if (obj && wrapper) {
      checkFields(obj, at, [wrapper], errors);
      at = `${at}.${wrapper}`;
      obj = readObject(obj[wrapper], at, errors);
    }
    if (!obj) {
      if (entry === null || entry === undefined || wrapper) errors.add(at, 'is required');
      return;
    }
    if (Object.keys(obj).length === 0) return errors.add(at, 'must not be empty: set at least one field');
    out.push(read(obj, at, errors));
  });
  return out;
}

const SOURCE_FIELDS = ['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;

function readSource(raw: Obj, field: string, errors: FieldErrors): AuthorizationSource {
  checkFields(raw, field, SOURCE_FIELDS, errors, {
    requestPrincipals: JWT,
    notRequestPrincipals: JWT,
    serviceAccounts: 'is not supported yet; use principals <trust-domain>/ns/<namespace>/sa/<service-account>',
    notServiceAccounts: 'is not supported yet; use notPrincipals <trust-domain>/ns/<namespace>/sa/<service-account>',
  });
  const source: AuthorizationSource = {};
  const set = (key: (typeof SOURCE_FIELDS)[number], problem: (v: string) => string | undefined): void => {
    const values = readStrings(raw[key], `${field}.${key}`, errors, problem);
    if (values) source[key] = values;
  };
  set('principals', principalProblem);
  set('notPrincipals', principalProblem);
  set('namespaces', namespacePatternProblem);
  set('notNamespaces', namespacePatternProblem);
  set('ipBlocks', ipBlockProblem);
  set('notIpBlocks', ipBlockProblem);
  set('remoteIpBlocks', ipBlockProblem);
  set('notRemoteIpBlocks', ipBlockProblem);
  return source;
}

const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

function readOperation(raw: Obj, field: string, errors: FieldErrors): AuthorizationOperation {
  checkFields(raw, field, OPERATION_FIELDS, errors);
  const op: AuthorizationOperation = {};
  const set = (key: 'hosts' | 'notHosts' | 'methods' | 'notMethods' | 'paths' | 'notPaths', problem: (v: string) => string | undefined): void => {
    const values = readStrings(raw[key], `${field}.${key}`, errors, problem);
    if (values) op[key] = values;
  };
  set('hosts', hostPatternProblem);
  set('notHosts', hostPatternProblem);
  set('methods', methodPatternProblem);
  set('notMethods', methodPatternProblem);
  set('paths', pathPatternProblem);
  set('notPaths', pathPatternProblem);
  const ports = readPorts(raw.ports, `${field}.ports`, errors);
  const notPorts = readPorts(raw.notPorts, `${field}.notPorts`, errors);
  if (ports) op.ports = ports;
  if (notPorts) op.notPorts = notPorts;
  return op;
}

const WHEN_KEYS = ['source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port', 'request.headers[<name>]'];
const HEADER_KEY = /^request\.headers\[([!#$%&'*+.^_`|~0-9A-Za-z-]+)\]$/;

type ValueCheck = { problem: (v: string) => string | undefined } | { ports: true } | { refused: string };

/** How the values of a `when` key are checked, or why nodemesh cannot evaluate the key. */
function whenValueCheck(key: string): ValueCheck {
  switch (key) {
    case 'source.ip':
    case 'remote.ip':
    case 'destination.ip':
      return { problem: ipBlockProblem };
    case 'source.namespace':
      return { problem: namespacePatternProblem };
    case 'source.principal':
      return { problem: principalProblem };
    case 'destination.port':
      return { ports: true };
    case 'connection.sni':
      return { refused: 'connection.sni is not supported: nodemesh does not read the TLS server name of proxied connections' };
    case 'destination.namespace':
      return { refused: 'destination.namespace is replaced by metadata.namespace' };
    case 'destination.name':
    case 'destination.user':
      return { refused: `${key} was only supported by Istio's v1alpha1 API` };
  }
  if (key.startsWith('request.headers')) {
    return HEADER_KEY.test(key)
      ? { problem: valuePatternProblem }
      : { refused: 'must be request.headers[<name>] with a header name between the brackets' };
  }
  if (key.startsWith('request.auth.')) return { refused: `${key} ${JWT}` };
  if (key.startsWith('destination.labels')) return { refused: 'destination.labels is replaced by spec.selector' };
  if (key.startsWith('experimental.')) return { refused: `${key} reads Envoy metadata, which nodemesh does not have` };
  return { refused: `unknown key ${show(key)}; accepted: ${WHEN_KEYS.join(', ')}` };
}

function readCondition(raw: Obj, field: string, errors: FieldErrors): AuthorizationCondition {
  checkFields(raw, field, ['key', 'values', 'notValues'], errors);
  const key = readString(raw.key, `${field}.key`, errors) ?? '';
  const condition: AuthorizationCondition = { key };
  if (!key) {
    if (raw.key === undefined || raw.key === null || raw.key === '') errors.add(`${field}.key`, 'is required');
    return condition;
  }
  if (raw.values === undefined && raw.notValues === undefined) errors.add(field, 'must set values or notValues');
  const check = whenValueCheck(key);
  if ('refused' in check) {
    errors.add(`${field}.key`, check.refused);
    return condition;
  }
  for (const which of ['values', 'notValues'] as const) {
    const at = `${field}.${which}`;
    const values = 'ports' in check ? readPorts(raw[which], at, errors)?.map(String) : readStrings(raw[which], at, errors, check.problem);
    if (values) condition[which] = values;
  }
  return condition;
}
