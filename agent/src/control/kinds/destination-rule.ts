// networking.istio.io DestinationRule: how the outbound proxy balances, pools connections to
// and ejects endpoints of one Service (looked up by state/traffic.ts). Istio's semantics and
// checks (pkg/config/validation); what nodemesh cannot apply is refused, naming the field.
import type {
  ConnectionPoolSettings,
  LoadBalancerSettings,
  MeshDestinationRule,
  OutlierDetectionSettings,
  TrafficPolicy,
} from '../../state/model.js';
import { readDuration } from '../duration.js';
import { FieldErrors, checkFields, nameProblem, readInt, readList, readObject, readPort, readRequiredString, show, type Obj } from '../fields.js';
import type { KindValidator } from '../resource.js';
import { readHeaderName, readMapping } from './route-fields.js';

const API_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];
const INT32_MAX = 2_147_483_647;
const NOT = (what: string): string => `is not supported by nodemesh${what ? `: ${what}` : ''}`;

const SPEC_UNSUPPORTED: Record<string, string> = {
  subsets: NOT('give each version its own Service and split traffic with HTTPRoute backendRefs weights'),
  exportTo: NOT('a DestinationRule applies to clients in its own namespace, the Service\'s namespace, or every namespace from nodemesh-system'),
  workloadSelector: NOT('a DestinationRule applies to every client of the Service'),
};
const POLICY_UNSUPPORTED: Record<string, string> = {
  tls: NOT('traffic between node proxies is always mTLS (HBONE), and nodemesh does not originate TLS to Services'),
  tunnel: NOT(''),
  proxyProtocol: NOT(''),
  retryBudget: NOT('set retries on the HTTPRoute rule'),
};
const POLICY_FIELDS = ['loadBalancer', 'connectionPool', 'outlierDetection'];

export const destinationRuleKinds: ReadonlyArray<KindValidator<'destinationRules'>> = API_VERSIONS.map((apiVersion) => ({
  apiVersion,
  kind: 'DestinationRule',
  collection: 'destinationRules',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshDestinationRule {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    checkFields(spec, 'spec', ['host', 'trafficPolicy'], errors, SPEC_UNSUPPORTED);
    const host = readRequiredString(spec.host, 'spec.host', errors) ?? '';
    const rule: MeshDestinationRule = {
      namespace: meta.namespace,
      name: meta.name,
      host,
      service: resolveHost(host, meta.namespace, errors) ?? { namespace: meta.namespace, name: '' },
      trafficPolicy: {},
      portLevel: [],
    };
    if (meta.createdMs !== undefined) rule.createdMs = meta.createdMs;
    const policy = readObject(spec.trafficPolicy, 'spec.trafficPolicy', errors);
    if (!policy) return rule;
    const field = 'spec.trafficPolicy';
    checkFields(policy, field, [...POLICY_FIELDS, 'portLevelSettings'], errors, POLICY_UNSUPPORTED);
    if (Object.keys(policy).length === 0) errors.add(field, `must set at least one of ${POLICY_FIELDS.join(', ')}, portLevelSettings`);
    return { ...rule, trafficPolicy: readSettings(policy, field, errors), portLevel: readPortLevel(policy.portLevelSettings, `${field}.portLevelSettings`, errors) };
  },
}));

/** "name" (the rule's namespace), "name.ns", "name.ns.svc" or "name.ns.svc.cluster.local". */
function resolveHost(host: string, namespace: string, errors: FieldErrors): { namespace: string; name: string } | undefined {
  if (!host) return undefined;
  if (host.includes('*')) {
    errors.add('spec.host', `wildcard hosts are not supported: name one Service, got ${show(host)}`);
    return undefined;
  }
  const parts = host.split('.');
  const suffix = parts.slice(2).join('.');
  if (parts.length > 2 && suffix !== 'svc' && suffix !== 'svc.cluster.local') {
    errors.add('spec.host', `must name a Service as <name>, <name>.<namespace>, <name>.<namespace>.svc or <name>.<namespace>.svc.cluster.local (nodemesh has no external hosts), got ${show(host)}`);
    return undefined;
  }
  const service = { name: parts[0]!, namespace: parts[1] ?? namespace };
  const problem = nameProblem(service.name, 'dns1035-label') ?? nameProblem(service.namespace, 'dns1123-label');
  if (problem) {
    errors.add('spec.host', `must name a Service as <name>.<namespace>...: ${problem}`);
    return undefined;
  }
  return service;
}

/** loadBalancer, connectionPool and outlierDetection of the top level or of one port. */
function readSettings(raw: Obj, field: string, errors: FieldErrors): TrafficPolicy {
  const policy: TrafficPolicy = {};
  const loadBalancer = readLoadBalancer(raw.loadBalancer, `${field}.loadBalancer`, errors);
  const connectionPool = readConnectionPool(raw.connectionPool, `${field}.connectionPool`, errors);
  const outlierDetection = readOutlierDetection(raw.outlierDetection, `${field}.outlierDetection`, errors);
  if (loadBalancer) policy.loadBalancer = loadBalancer;
  if (connectionPool) policy.connectionPool = connectionPool;
  if (outlierDetection) policy.outlierDetection = outlierDetection;
  return policy;
}

function readPortLevel(value: unknown, field: string, errors: FieldErrors): Array<{ port: number; policy: TrafficPolicy }> {
  const out: Array<{ port: number; policy: TrafficPolicy }> = [];
  const seen = new Map<number, number>();
  readList(value, field, errors, 4096).forEach((entry, i) => {
    const at = `${field}[${i}]`;
    const raw = readMapping(entry, at, errors);
    if (!raw) return;
    checkFields(raw, at, ['port', ...POLICY_FIELDS], errors, POLICY_UNSUPPORTED);
    const portSelector = readObject(raw.port, `${at}.port`, errors);
    if (!portSelector) {
      if (raw.port === undefined || raw.port === null) errors.add(`${at}.port`, 'is required: { number: <Service port> }');
      return;
    }
    checkFields(portSelector, `${at}.port`, ['number'], errors);
    const port = readPort(portSelector.number, `${at}.port.number`, errors);
    if (!POLICY_FIELDS.some((k) => raw[k] !== undefined)) errors.add(at, `must set at least one of ${POLICY_FIELDS.join(', ')}`);
    const policy = readSettings(raw, at, errors);
    if (port === undefined) return;
    const first = seen.get(port);
    if (first !== undefined) return errors.add(`${at}.port.number`, `duplicate port ${port}, already set by ${field}[${first}]`);
    seen.set(port, i);
    out.push({ port, policy });
  });
  return out.sort((a, b) => a.port - b.port);
}

function readLoadBalancer(value: unknown, field: string, errors: FieldErrors): LoadBalancerSettings | undefined {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['simple', 'consistentHash'], errors, {
    localityLbSetting: NOT('endpoints are balanced without locality'),
    warmupDurationSecs: NOT('new endpoints get their full share at once'),
    warmup: NOT('new endpoints get their full share at once'),
  });
  if (raw.simple !== undefined && raw.consistentHash !== undefined) {
    errors.add(field, 'set simple or consistentHash, not both');
    return undefined;
  }
  if (raw.consistentHash !== undefined) return readConsistentHash(raw.consistentHash, `${field}.consistentHash`, errors);
  switch (raw.simple) {
    case 'ROUND_ROBIN':
    case 'LEAST_REQUEST':
    case 'RANDOM':
      return { simple: raw.simple };
    case 'LEAST_CONN':
      // Istio's deprecated name for LEAST_REQUEST.
      return { simple: 'LEAST_REQUEST' };
    case 'PASSTHROUGH':
      errors.add(`${field}.simple`, 'PASSTHROUGH (send to the address the client asked for) is not supported: nodemesh always balances over the Service endpoints');
      return undefined;
    case undefined:
      errors.add(field, 'must set simple or consistentHash');
      return undefined;
    default:
      errors.add(`${field}.simple`, `must be one of ROUND_ROBIN, LEAST_REQUEST, RANDOM (or LEAST_CONN, Istio's old name for LEAST_REQUEST), got ${show(raw.simple)}`);
      return undefined;
  }
}

function readConsistentHash(value: unknown, field: string, errors: FieldErrors): LoadBalancerSettings | undefined {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  const oneHash = NOT('nodemesh has one consistent hash ring; remove it');
  checkFields(raw, field, ['httpHeaderName', 'useSourceIp'], errors, {
    httpCookie: NOT('hash on httpHeaderName (such as a session header) or useSourceIp'),
    httpQueryParameterName: NOT('hash on httpHeaderName or useSourceIp'),
    ringHash: oneHash,
    maglev: oneHash,
    minimumRingSize: oneHash,
  });
  if (raw.httpHeaderName !== undefined && raw.useSourceIp !== undefined) {
    errors.add(field, 'set httpHeaderName or useSourceIp, not both');
    return undefined;
  }
  if (raw.httpHeaderName !== undefined) {
    const name = readHeaderName(raw.httpHeaderName, `${field}.httpHeaderName`, errors);
    return name === undefined ? undefined : { consistentHash: { httpHeaderName: name } };
  }
  if (raw.useSourceIp === true) return { consistentHash: { useSourceIp: true } };
  if (raw.useSourceIp !== undefined) errors.add(`${field}.useSourceIp`, `must be true (or set httpHeaderName instead), got ${show(raw.useSourceIp)}`);
  else errors.add(field, 'must set httpHeaderName or useSourceIp: true');
  return undefined;
}

/** Istio's counts: 0 is "unset" (its default, unlimited), so it is left out; negative is refused. */
function readCount(raw: Obj, key: string, field: string, errors: FieldErrors): number | undefined {
  const n = readInt(raw[key], `${field}.${key}`, errors, 0, INT32_MAX);
  return n === 0 ? undefined : n;
}

function readConnectionPool(value: unknown, field: string, errors: FieldErrors): ConnectionPoolSettings | undefined {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['tcp', 'http'], errors);
  if (raw.tcp === undefined && raw.http === undefined) errors.add(field, 'must set tcp, http or both');
  const pool: ConnectionPoolSettings = {};
  const set = (key: keyof ConnectionPoolSettings, v: number | undefined): void => {
    if (v !== undefined) pool[key] = v;
  };
  const tcp = readObject(raw.tcp, `${field}.tcp`, errors);
  if (tcp) {
    const at = `${field}.tcp`;
    checkFields(tcp, at, ['maxConnections', 'connectTimeout'], errors, {
      tcpKeepalive: NOT(''),
      maxConnectionDuration: NOT(''),
      idleTimeout: NOT(`use ${field}.http.idleTimeout`),
    });
    set('maxConnections', readCount(tcp, 'maxConnections', at, errors));
    set('connectTimeoutMs', readDuration(tcp.connectTimeout, `${at}.connectTimeout`, errors, 'istio', 1));
  }
  const http = readObject(raw.http, `${field}.http`, errors);
  if (http) {
    const at = `${field}.http`;
    checkFields(http, at, ['http1MaxPendingRequests', 'http2MaxRequests', 'maxRequestsPerConnection', 'maxRetries', 'idleTimeout'], errors, {
      h2UpgradePolicy: NOT('the node proxy chooses the upstream protocol'),
      useClientProtocol: NOT('the node proxy chooses the upstream protocol'),
      maxConcurrentStreams: NOT(''),
    });
    set('http1MaxPendingRequests', readCount(http, 'http1MaxPendingRequests', at, errors));
    set('http2MaxRequests', readCount(http, 'http2MaxRequests', at, errors));
    set('maxRequestsPerConnection', readCount(http, 'maxRequestsPerConnection', at, errors));
    set('maxRetries', readCount(http, 'maxRetries', at, errors));
    set('idleTimeoutMs', readDuration(http.idleTimeout, `${at}.idleTimeout`, errors, 'istio', 1));
  }
  return pool;
}

function readOutlierDetection(value: unknown, field: string, errors: FieldErrors): OutlierDetectionSettings | undefined {
  const raw = readObject(value, field, errors);
  if (!raw) return undefined;
  checkFields(raw, field, ['consecutive5xxErrors', 'consecutiveGatewayErrors', 'interval', 'baseEjectionTime', 'maxEjectionPercent'], errors, {
    consecutiveErrors: 'is deprecated by Istio and not supported: use consecutive5xxErrors or consecutiveGatewayErrors',
    splitExternalLocalOriginErrors: NOT('connection failures count as gateway errors'),
    consecutiveLocalOriginFailures: NOT('connection failures count as gateway errors'),
    minHealthPercent: NOT('ejection is bounded by maxEjectionPercent only'),
  });
  return {
    consecutive5xxErrors: readInt(raw.consecutive5xxErrors, `${field}.consecutive5xxErrors`, errors, 0, INT32_MAX) ?? 5,
    consecutiveGatewayErrors: readInt(raw.consecutiveGatewayErrors, `${field}.consecutiveGatewayErrors`, errors, 0, INT32_MAX) ?? 0,
    intervalMs: readDuration(raw.interval, `${field}.interval`, errors, 'istio', 1) ?? 10_000,
    baseEjectionTimeMs: readDuration(raw.baseEjectionTime, `${field}.baseEjectionTime`, errors, 'istio', 1) ?? 30_000,
    maxEjectionPercent: readInt(raw.maxEjectionPercent, `${field}.maxEjectionPercent`, errors, 0, 100) ?? 10,
  };
}
