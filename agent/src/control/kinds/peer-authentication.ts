// security.istio.io PeerAuthentication: whether a workload's inbound port accepts plaintext
// (PERMISSIVE, DISABLE) or only mTLS (STRICT); resolved by policy/peer-authentication.ts.
// Checks are Istio's ValidatePeerAuthentication, plus refusal of unknown fields.
import type { MeshPeerAuthentication, MtlsMode } from '../../state/model.js';
import { FieldErrors, checkFields, readObject, show, type Obj } from '../fields.js';
import type { KindValidator } from '../resource.js';
import { SECURITY_API_VERSIONS, readSelector } from './security-fields.js';

const MODES: readonly MtlsMode[] = ['STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET'];

export const peerAuthenticationKinds: ReadonlyArray<KindValidator<'peerAuthentications'>> = SECURITY_API_VERSIONS.map((apiVersion) => ({
  apiVersion,
  kind: 'PeerAuthentication',
  collection: 'peerAuthentications',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshPeerAuthentication {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    checkFields(spec, 'spec', ['selector', 'mtls', 'portLevelMtls'], errors);
    const selector = readSelector(spec.selector, errors);
    const portLevelMtls = readPortLevel(spec.portLevelMtls, errors);
    if (portLevelMtls.length > 0 && !selector) {
      errors.add('spec.portLevelMtls', 'needs spec.selector.matchLabels: mesh-wide and namespace-wide policies cannot set port-level mTLS');
    }
    return { namespace: meta.namespace, name: meta.name, selector, mode: readMtls(spec.mtls, 'spec.mtls', errors), portLevelMtls };
  },
}));

function readMtls(value: unknown, field: string, errors: FieldErrors): MtlsMode {
  const mtls = readObject(value, field, errors);
  if (!mtls) return 'UNSET';
  checkFields(mtls, field, ['mode'], errors);
  return readMode(mtls, field, errors);
}

function readMode(mtls: Obj, field: string, errors: FieldErrors): MtlsMode {
  const mode = mtls.mode ?? 'UNSET';
  if (MODES.includes(mode as MtlsMode)) return mode as MtlsMode;
  errors.add(`${field}.mode`, `must be one of ${MODES.join(', ')}, got ${show(mode)}`);
  return 'UNSET';
}

function readPortLevel(value: unknown, errors: FieldErrors): Array<{ port: number; mode: MtlsMode }> {
  const map = readObject(value, 'spec.portLevelMtls', errors);
  if (!map) return [];
  if (Object.keys(map).length === 0) errors.add('spec.portLevelMtls', 'must not be empty: remove it, or list ports with their mode');
  const out: Array<{ port: number; mode: MtlsMode }> = [];
  for (const [key, entry] of Object.entries(map)) {
    const field = `spec.portLevelMtls[${key}]`;
    const port = /^[0-9]+$/.test(key) ? Number(key) : NaN;
    if (!(port >= 1 && port <= 65535)) errors.add(field, `the key must be a port between 1 and 65535, got ${show(key)}`);
    const mtls = readObject(entry, field, errors);
    if (!mtls) {
      if (entry === null || entry === undefined) errors.add(field, 'must be a mapping with mode');
      continue;
    }
    checkFields(mtls, field, ['mode'], errors);
    out.push({ port, mode: readMode(mtls, field, errors) });
  }
  return out.sort((a, b) => a.port - b.port);
}
