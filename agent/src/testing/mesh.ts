// Test helpers shared by unit tests: mesh states, from parts or from YAML through the real
// validation, and a logger that keeps its lines for assertions.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { applyConfig } from '../control/apply.js';
import { parseConfig } from '../control/config-docs.js';
import { MeshIndex } from '../state/mesh-index.js';
import { objectKey, type MeshState } from '../state/model.js';

/** A state holding only what a unit test gives it; entries are keyed "namespace/name". */
export function meshState(parts: { [K in keyof MeshState]?: MeshState[K] extends ReadonlyMap<string, infer V> ? readonly V[] : never }): MeshState {
  const map = <V extends { namespace: string; name: string }>(list: readonly V[] = []) => new Map(list.map((v) => [objectKey(v.namespace, v.name), v]));
  return {
    version: 1,
    nodes: new Map((parts.nodes ?? []).map((n) => [n.name, n])),
    namespaces: new Map((parts.namespaces ?? []).map((n) => [n.name, n])),
    pods: map(parts.pods),
    services: map(parts.services),
    endpointSlices: map(parts.endpointSlices),
    authorizationPolicies: map(parts.authorizationPolicies),
    peerAuthentications: map(parts.peerAuthentications),
    httpRoutes: map(parts.httpRoutes),
    grpcRoutes: map(parts.grpcRoutes),
    destinationRules: map(parts.destinationRules),
    faultInjections: map(parts.faultInjections),
    localRateLimits: map(parts.localRateLimits),
    rejections: [],
  };
}

/** YAML for a Node with its InternalIP and the enrolled namespace "shop" most tests use. */
export const nodeAndShop = (node: string, ip: string): string => `apiVersion: v1
kind: Node
metadata: { name: ${node} }
status: { addresses: [{ type: InternalIP, address: ${ip} }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: shop, labels: { nodemesh.io/mode: enabled } }`;

/** A mesh state through the real validation: nodes n1, n2 and the given pods (no pod IPs). */
export function podsState(pods: Array<{ namespace: string; name: string; nodeName: string; serviceAccount: string }>): MeshState {
  const namespaces = [...new Set(pods.map((p) => p.namespace))];
  const yaml = [
    ...['n1', 'n2'].map(
      (n, i) => `apiVersion: v1\nkind: Node\nmetadata: { name: ${n} }\nstatus: { addresses: [{ type: InternalIP, address: 10.0.0.${i + 1} }] }\n`,
    ),
    ...namespaces.map((ns) => `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${ns} }\n`),
    ...pods.map(
      (p) =>
        `apiVersion: v1\nkind: Pod\nmetadata: { name: ${p.name}, namespace: ${p.namespace} }\nspec: { nodeName: ${p.nodeName}, serviceAccountName: ${p.serviceAccount} }\n`,
    ),
  ].join('---\n');
  const state = stateFromYaml(yaml, 'n1');
  if (state.rejections.length) throw new Error(`test mesh rejected: ${JSON.stringify(state.rejections)}`);
  return state;
}

/** YAML through the real validation, as `node` would apply it; every pod cgroup "exists". */
const stateFromYaml = (yaml: string, node: string): MeshState => applyConfig(null, parseConfig(yaml, 'test.yaml'), { node, cgroupExists: () => true });

/** Builds the node's index from YAML; every pod cgroup "exists" and has id = its position + 1. */
/** `edit` changes the validated state, for what validation would refuse (loopback addresses in an EndpointSlice). */
export function indexFromYaml(yaml: string, node: string, edit: (state: MeshState) => MeshState = (s) => s): MeshIndex {
  const state = edit(stateFromYaml(yaml, node));
  const ids = new Map<string, bigint>();
  return new MeshIndex(state, node, (path) => {
    if (!ids.has(path)) ids.set(path, BigInt(ids.size + 1));
    return ids.get(path);
  });
}

export function memoryLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}
