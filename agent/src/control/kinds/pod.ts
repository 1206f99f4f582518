// v1 Pod: a workload the mesh can capture (on this node, through its cgroup) and an
// endpoint other pods reach (anywhere, through its podIP and container ports).
import { posix } from 'node:path';
import { CGROUP_ANNOTATION, type ContainerPort, type MeshPod } from '../../state/model.js';
import {
  FieldErrors,
  ianaNameProblem,
  isObj,
  nameProblem,
  readArray,
  readIPv4,
  readObject,
  readPort,
  readProtocol,
  readString,
  show,
  type Obj,
} from '../fields.js';
import type { KindValidator, ValidationContext } from '../resource.js';

export const podKind: KindValidator<'pods'> = {
  apiVersion: 'v1',
  kind: 'Pod',
  collection: 'pods',
  namespaced: true,
  nameFormat: 'dns1123-subdomain',
  validate(object, meta, errors, ctx): MeshPod {
    const spec = readObject(object.spec, 'spec', errors) ?? {};
    const status = readObject(object.status, 'status', errors) ?? {};

    const nodeName = readString(spec.nodeName, 'spec.nodeName', errors);
    if (!nodeName) errors.add('spec.nodeName', 'is required: the node the pod runs on (its proxy serves it)');
    else checkName(nodeName, 'spec.nodeName', errors);
    const serviceAccount = readString(spec.serviceAccountName, 'spec.serviceAccountName', errors) || 'default';
    checkName(serviceAccount, 'spec.serviceAccountName', errors);

    const pod: MeshPod = {
      namespace: meta.namespace,
      name: meta.name,
      nodeName: nodeName ?? '',
      serviceAccount,
      labels: meta.labels,
      ready: readReady(status, errors),
      containerPorts: readContainerPorts(spec, errors),
    };
    if (meta.uid) pod.uid = meta.uid;
    // Kubernetes reports "" until an address is assigned: the pod exists but is no endpoint yet.
    const podIP = readString(status.podIP, 'status.podIP', errors);
    if (podIP) pod.podIP = readIPv4(podIP, 'status.podIP', errors);
    const cgroupPath = meta.annotations[CGROUP_ANNOTATION];
    if (cgroupPath !== undefined) {
      if (checkCgroup(cgroupPath, pod.nodeName, errors, ctx)) pod.cgroupPath = cgroupPath;
    } else if (pod.nodeName === ctx.node && meta.uid && ctx.podCgroup) {
      const qosClass = readString(status.qosClass, 'status.qosClass', errors);
      const found = ctx.podCgroup({ uid: meta.uid, ...(qosClass && { qosClass }) });
      if (found) pod.cgroupPath = found;
    }
    return pod;
  },
};

function checkName(value: string, field: string, errors: FieldErrors): void {
  const problem = nameProblem(value, 'dns1123-subdomain');
  if (problem) errors.add(field, problem);
}

/** Ready unless a Ready condition says False: a static pod list usually has no conditions. */
function readReady(status: Obj, errors: FieldErrors): boolean {
  let ready = true;
  readArray(status.conditions, 'status.conditions', errors).forEach((c, i) => {
    if (!isObj(c)) return errors.add(`status.conditions[${i}]`, `must be a mapping with type and status, got ${show(c)}`);
    if (c.type !== 'Ready') return;
    if (c.status !== 'True' && c.status !== 'False' && c.status !== 'Unknown') {
      return errors.add(`status.conditions[${i}].status`, `must be True, False or Unknown, got ${show(c.status)}`);
    }
    ready = c.status !== 'False';
  });
  return ready;
}

function readContainerPorts(spec: Obj, errors: FieldErrors): ContainerPort[] {
  const out: ContainerPort[] = [];
  // Names are unique across the pod so a Service's named targetPort resolves to one port.
  const names = new Map<string, string>();
  readArray(spec.containers, 'spec.containers', errors).forEach((c, ci) => {
    const container = readObject(c, `spec.containers[${ci}]`, errors);
    if (!container) return;
    readArray(container.ports, `spec.containers[${ci}].ports`, errors).forEach((p, pi) => {
      const field = `spec.containers[${ci}].ports[${pi}]`;
      const port = readObject(p, field, errors);
      if (!port) return;
      const containerPort = readPort(port.containerPort, `${field}.containerPort`, errors);
      const protocol = readProtocol(port.protocol, `${field}.protocol`, errors);
      const name = readString(port.name, `${field}.name`, errors);
      if (name) {
        const problem = ianaNameProblem(name);
        const first = names.get(name);
        if (problem) errors.add(`${field}.name`, problem);
        else if (first) errors.add(`${field}.name`, `duplicate port name ${show(name)}, already used by ${first}`);
        else names.set(name, field);
      }
      if (containerPort === undefined) return;
      const entry: ContainerPort = { containerPort, protocol };
      if (name) entry.name = name;
      out.push(entry);
    });
  });
  return out;
}

/**
 * The path must be absolute everywhere (normalized, so no `..` leads the agent elsewhere) and
 * exist on this node, where the agent attaches to it; other nodes' paths mean nothing here.
 */
function checkCgroup(path: string, nodeName: string, errors: FieldErrors, ctx: ValidationContext): boolean {
  const field = `metadata.annotations[${CGROUP_ANNOTATION}]`;
  if (!posix.isAbsolute(path) || posix.normalize(path) !== path) {
    errors.add(field, `must be an absolute, normalized cgroup v2 directory path, got ${show(path)}`);
    return false;
  }
  if (nodeName === ctx.node && !ctx.cgroupExists(path)) {
    errors.add(field, `cgroup directory ${path} does not exist on this node (${ctx.node}); check the pod is running and the path is under the cgroup v2 mount`);
    return false;
  }
  return true;
}
