// v1 Service: the virtual addresses the mesh captures (clusterIP:port) and how each port maps
// to pods (selector + targetPort), checked with Kubernetes' own rules.
import type { MeshService, MeshServicePort } from '../../state/model.js';
import {
  FieldErrors,
  ianaNameProblem,
  nameProblem,
  qualifiedNameProblem,
  readArray,
  readIPv4,
  readObject,
  readPort,
  readProtocol,
  readString,
  readStringMap,
  show,
} from '../fields.js';
import type { KindValidator } from '../resource.js';

export const serviceKind: KindValidator<'services'> = {
  apiVersion: 'v1',
  kind: 'Service',
  collection: 'services',
  namespaced: true,
  nameFormat: 'dns1035-label',
  validate(object, meta, errors): MeshService {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    const clusterIP = readClusterIP(spec.clusterIP, errors);
    const list = readArray(spec.ports, 'spec.ports', errors);
    const ports = readServicePorts(list, errors);
    if (list.length === 0 && clusterIP !== null) {
      errors.add('spec.ports', 'must list at least one port (only a headless Service may have none)');
    }
    const selector = readStringMap(spec.selector, 'spec.selector', errors, 'label');
    return {
      namespace: meta.namespace,
      name: meta.name,
      clusterIP,
      ports,
      // Kubernetes treats an empty selector like none: endpoints are managed elsewhere.
      selector: Object.keys(selector).length > 0 ? selector : null,
    };
  },
};

function readClusterIP(value: unknown, errors: FieldErrors): string | null {
  if (value === 'None') return null;
  if (value === undefined || value === null || value === '') {
    // Standalone mode has no allocator to pick one, as the API server would.
    errors.add('spec.clusterIP', 'is required: an IPv4 address, or None for a headless Service');
    return null;
  }
  return readIPv4(value, 'spec.clusterIP', errors) ?? null;
}

function readServicePorts(list: unknown[], errors: FieldErrors): MeshServicePort[] {
  const out: MeshServicePort[] = [];
  const names = new Map<string, number>();
  const numbers = new Map<string, number>();
  list.forEach((p, i) => {
    const field = `spec.ports[${i}]`;
    const raw = readObject(p, field, errors);
    if (!raw) return;
    const port = readPort(raw.port, `${field}.port`, errors);
    const protocol = readProtocol(raw.protocol, `${field}.protocol`, errors);
    const name = readString(raw.name, `${field}.name`, errors);
    const appProtocol = readString(raw.appProtocol, `${field}.appProtocol`, errors);
    const targetPort = readTargetPort(raw.targetPort, port, `${field}.targetPort`, errors);

    if (!name) {
      if (list.length > 1) errors.add(`${field}.name`, 'is required when the Service has more than one port');
    } else {
      const problem = nameProblem(name, 'dns1123-label');
      if (problem) errors.add(`${field}.name`, problem);
      const first = names.get(name);
      if (first !== undefined) errors.add(`${field}.name`, `duplicate name ${show(name)}, already used by spec.ports[${first}]`);
      else names.set(name, i);
    }
    if (appProtocol) {
      const problem = qualifiedNameProblem(appProtocol);
      if (problem) errors.add(`${field}.appProtocol`, problem);
    }
    if (port === undefined || targetPort === undefined) return;
    const first = numbers.get(`${port}/${protocol}`);
    if (first !== undefined) {
      errors.add(`${field}.port`, `duplicate port ${port}/${protocol}, already used by spec.ports[${first}]`);
    } else numbers.set(`${port}/${protocol}`, i);

    const entry: MeshServicePort = { port, targetPort, protocol };
    if (name) entry.name = name;
    if (appProtocol) entry.appProtocol = appProtocol;
    out.push(entry);
  });
  return out;
}

/** A port number, or the name of a container port; absent means the same number as `port`. */
function readTargetPort(
  value: unknown,
  port: number | undefined,
  field: string,
  errors: FieldErrors,
): number | string | undefined {
  if (value === undefined || value === null) return port;
  if (typeof value === 'number') return readPort(value, field, errors);
  if (typeof value === 'string') {
    if (/^[0-9]+$/.test(value)) {
      errors.add(field, `must be a port number or a container port name, got ${show(value)}; write the number without quotes`);
      return undefined;
    }
    const problem = ianaNameProblem(value);
    if (problem) errors.add(field, `must be a port number or a container port name that ${problem}`);
    return problem ? undefined : value;
  }
  errors.add(field, `must be a port number or a container port name, got ${show(value)}`);
  return undefined;
}
