// discovery.k8s.io/v1 EndpointSlice: where a Service without a selector sends its traffic
// (external databases, VMs, endpoints in another cluster), read as kube-proxy reads it.
import type { MeshEndpointSlice, SliceEndpoint, SlicePort } from '../../state/model.js';
import {
  FieldErrors,
  nameProblem,
  qualifiedNameProblem,
  readIPv4,
  readList,
  readObject,
  readPort,
  readProtocol,
  readString,
  show,
} from '../fields.js';
import type { KindValidator } from '../resource.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;
type AddressType = (typeof ADDRESS_TYPES)[number];

export const endpointSliceKind: KindValidator<'endpointSlices'> = {
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  collection: 'endpointSlices',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors): MeshEndpointSlice {
    const serviceName = meta.labels[SERVICE_NAME_LABEL];
    const labelField = `metadata.labels[${SERVICE_NAME_LABEL}]`;
    if (!serviceName) errors.add(labelField, 'is required: the name of the Service this slice gives endpoints to, in the same namespace');
    else {
      const problem = nameProblem(serviceName, 'dns1035-label');
      if (problem) errors.add(labelField, `must name a Service: ${problem}`);
    }
    const addressType = readAddressType(object.addressType, errors);
    const endpoints = readList(object.endpoints, 'endpoints', errors, 1000);
    return {
      namespace: meta.namespace,
      name: meta.name,
      serviceName: serviceName ?? '',
      addressType: addressType ?? 'IPv4',
      // The mesh captures and dials IPv4 only: other slices give no endpoint (a dual-stack
      // cluster has an IPv6 slice beside each IPv4 one, which must not be refused).
      endpoints: addressType === 'IPv4' ? readEndpoints(endpoints, errors) : [],
      ports: readSlicePorts(readList(object.ports, 'ports', errors, 100), errors),
    };
  },
};

function readAddressType(value: unknown, errors: FieldErrors): AddressType | undefined {
  if (ADDRESS_TYPES.includes(value as AddressType)) return value as AddressType;
  errors.add('addressType', `must be one of ${ADDRESS_TYPES.join(', ')}, got ${show(value)}`);
  return undefined;
}

function readEndpoints(list: unknown[], errors: FieldErrors): SliceEndpoint[] {
  const out: SliceEndpoint[] = [];
  list.forEach((e, i) => {
    const field = `endpoints[${i}]`;
    const raw = readObject(e, field, errors);
    if (!raw) return;
    const addresses = readList(raw.addresses, `${field}.addresses`, errors, 100);
    if (addresses.length === 0) errors.add(`${field}.addresses`, 'must list at least one address');
    // Every address is checked; only the first is used (the others are the same endpoint).
    const [address] = addresses.map((a, j) => {
      const ip = readIPv4(a, `${field}.addresses[${j}]`, errors);
      const problem = ip && forbiddenRange(ip);
      if (problem) errors.add(`${field}.addresses[${j}]`, `may not be ${problem}, got ${show(ip)}`);
      return problem ? undefined : ip;
    });
    const conditions = readObject(raw.conditions, `${field}.conditions`, errors) ?? {};
    const ready = readCondition(conditions.ready, `${field}.conditions.ready`, errors);
    for (const c of ['serving', 'terminating']) readCondition(conditions[c], `${field}.conditions.${c}`, errors);
    // targetRef and nodeName are not read: the address says which pod, if any, it is.
    if (!address) return;
    out.push({ address, ready: ready ?? true });
  });
  return out;
}

/**
 * The ranges the Kubernetes API refuses for an endpoint address: the node proxy dials external
 * endpoints from the node, and must not be pointed at the node's own loopback services (its
 * admin API among them) or at link-local ones such as a cloud metadata server.
 */
function forbiddenRange(ip: string): string | undefined {
  const [a, b] = ip.split('.').map(Number) as [number, number];
  if (ip === '0.0.0.0') return 'the unspecified address';
  if (a === 127) return 'in the loopback range (127.0.0.0/8)';
  if (a === 169 && b === 254) return 'in the link-local range (169.254.0.0/16)';
  if (a >= 224 && a <= 239) return 'in the multicast range (224.0.0.0/4)';
  return undefined;
}

function readCondition(value: unknown, field: string, errors: FieldErrors): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value;
  errors.add(field, `must be true or false, got ${show(value)}`);
  return undefined;
}

function readSlicePorts(list: unknown[], errors: FieldErrors): SlicePort[] {
  const out: SlicePort[] = [];
  const names = new Map<string, number>();
  list.forEach((p, i) => {
    const field = `ports[${i}]`;
    const raw = readObject(p, field, errors);
    if (!raw) return;
    const name = readString(raw.name, `${field}.name`, errors) ?? '';
    if (name) {
      const problem = nameProblem(name, 'dns1123-label');
      if (problem) errors.add(`${field}.name`, problem);
    }
    const first = names.get(name);
    if (first !== undefined) errors.add(`${field}.name`, `duplicate name ${show(name)}, already used by ports[${first}]`);
    else names.set(name, i);
    const protocol = readProtocol(raw.protocol, `${field}.protocol`, errors);
    const appProtocol = readString(raw.appProtocol, `${field}.appProtocol`, errors);
    if (appProtocol) {
      const problem = qualifiedNameProblem(appProtocol);
      if (problem) errors.add(`${field}.appProtocol`, problem);
    }
    // Kubernetes allows a port-less entry ("not restricted"); kube-proxy skips it, so do we.
    if (raw.port === undefined || raw.port === null) return;
    const port = readPort(raw.port, `${field}.port`, errors);
    if (port !== undefined) out.push({ name, port, protocol });
  });
  return out;
}

