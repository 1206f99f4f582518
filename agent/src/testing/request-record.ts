// Test helper shared by the telemetry unit tests: the RequestRecord the L7 proxy emits for one
// finished request, built from the pods of a test mesh.
import type { MeshIndex } from '../state/mesh-index.js';
import type { RequestRecord } from '../telemetry/request-record.js';

const podOf = (view: MeshIndex, key: string) => {
  const pod = view.state.pods.get(key);
  if (!pod) throw new Error(`test mesh has no pod ${key}`);
  return pod;
};

/**
 * A source-reporter record of a plain HTTP/1.1 GET answered 200, from the pod `from`
 * ("namespace/name") to `to.service` ("namespace/name") on port 80, answered by the pod
 * `to.endpoint` on port 8080 when given; `over` replaces any field.
 */
export function requestRecord(view: MeshIndex, from: string, to: { service: string; endpoint?: string }, over: Partial<RequestRecord> = {}): RequestRecord {
  const client = podOf(view, from);
  const [namespace = '', name = ''] = to.service.split('/');
  const server = to.endpoint === undefined ? undefined : podOf(view, to.endpoint);
  return {
    reporter: 'source',
    startMs: 1_700_000_000_000,
    durationMs: 3.25,
    protocol: 'http',
    httpVersion: '1.1',
    method: 'GET',
    authority: `${name}.${namespace}`,
    path: '/items?id=7',
    status: 200,
    responseFlags: '-',
    requestBytes: 0,
    responseBytes: 120,
    retries: 0,
    source: { pod: client, ip: client.podIP ?? '', identity: `spiffe://cluster.local/ns/${client.namespace}/sa/${client.serviceAccount}` },
    destination: {
      service: { namespace, name, port: 80 },
      ...(server ? { endpoint: { kind: 'pod', pod: server, ip: server.podIP ?? '', port: 8080, nodeName: server.nodeName } } : {}),
    },
    security: server?.nodeName === view.nodeName ? 'node_local' : 'mutual_tls',
    ...over,
  };
}
