// Workload and node identities as SPIFFE ids: what the CA signs, what certificates carry in
// their URI SAN and what peers are checked against.
import { NodemeshError } from '../errors.js';

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** Namespace and service account of the agents: the node identity used by HBONE servers. */
export const NODE_NAMESPACE = 'nodemesh-system';
export const NODE_SERVICE_ACCOUNT = 'nodemesh-agent';
/** The controller's service account, named in its serving certificate. */
export const CONTROLLER_SERVICE_ACCOUNT = 'nodemesh-controller';

// SPIFFE allows [a-z0-9._-] in a trust domain; it must be lowercase.
const TRUST_DOMAIN = /^[a-z0-9](?:[a-z0-9._-]{0,253}[a-z0-9])?$/;
// Kubernetes: namespaces are DNS labels, service accounts DNS subdomains.
const DNS_LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$/;
const SHAPE = /^spiffe:\/\/([^/]*)\/ns\/([^/]*)\/sa\/([^/]*)$/;

const invalid = (uri: string, why: string): NodemeshError =>
  new NodemeshError(
    'NM_ERR_IDENTITY_SPIFFE_ID',
    `${JSON.stringify(uri)} is not a workload identity: ${why} (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)`,
  );

/** Strict parse of spiffe://<td>/ns/<ns>/sa/<sa>; throws NM_ERR_IDENTITY_SPIFFE_ID. */
export function parseSpiffeId(uri: string): SpiffeId {
  if (uri.length > 2048) throw invalid(uri.slice(0, 64) + '…', 'longer than 2048 characters');
  const m = SHAPE.exec(uri);
  if (!m) throw invalid(uri, 'wrong shape');
  const [, trustDomain = '', namespace = '', serviceAccount = ''] = m;
  checkTrustDomain(trustDomain, uri);
  if (!DNS_LABEL.test(namespace)) throw invalid(uri, `namespace ${JSON.stringify(namespace)} is not a DNS label`);
  if (!DNS_SUBDOMAIN.test(serviceAccount)) {
    throw invalid(uri, `service account ${JSON.stringify(serviceAccount)} is not a DNS subdomain name`);
  }
  return { trustDomain, namespace, serviceAccount };
}

/** Throws NM_ERR_IDENTITY_SPIFFE_ID unless `td` is a lowercase SPIFFE trust domain name. */
export function checkTrustDomain(td: string, uri = `spiffe://${td}`): void {
  if (!TRUST_DOMAIN.test(td)) {
    throw invalid(uri, `trust domain ${JSON.stringify(td)} must be lowercase letters, digits, '.', '-' or '_'`);
  }
}

export const formatSpiffeId = (id: SpiffeId): string =>
  `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;

/** Istio's principal form, as in AuthorizationPolicy `principals`: "<td>/ns/<ns>/sa/<sa>". */
export const principalOf = (id: SpiffeId): string => `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;

/** The identity every node's HBONE server presents (with a DNS SAN equal to the node name). */
export const nodeIdentity = (trustDomain: string): SpiffeId => ({
  trustDomain,
  namespace: NODE_NAMESPACE,
  serviceAccount: NODE_SERVICE_ACCOUNT,
});

export const isNodeIdentity = (id: SpiffeId): boolean =>
  id.namespace === NODE_NAMESPACE && id.serviceAccount === NODE_SERVICE_ACCOUNT;
