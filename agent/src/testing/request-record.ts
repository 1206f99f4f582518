// RequestRecord fakes for the telemetry tests: the record the L7 proxy emits for one finished
// request, a plausible outbound HTTP/1.1 GET answered 200, changed by the fields a test
// cares about; or the same between pods of a test mesh.
import type { MeshIndex } from '../state/mesh-index.js';
import type { MeshPod } from '../state/model.js';
import type { RequestRecord } from '../telemetry/request-record.js';

export const fakePod = (namespace: string, name: string, nodeName = 'n1'): MeshPod => ({
  namespace,
  name,
  nodeName,
  serviceAccount: 'default',
  podIP: '10.244.1.9',
  labels: {},
  ready: true,
  containerPorts: [],
});

/** From shop/client on n1 to the service shop/web, answered by shop/web-1 on n2; `over` replaces any field. */
export function fakeRequest(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    reporter: 'source',
    startMs: 1_700_000_000_000,
    durationMs: 5,
    protocol: 'http',
    httpVersion: '1.1',
    method: 'GET',
    authority: 'web.shop',
    path: '/',
    status: 200,
    responseFlags: '-',
    requestBytes: 0,
    responseBytes: 10,
    retries: 0,
    source: { pod: fakePod('shop', 'client'), ip: '10.244.1.2', identity: 'spiffe://cluster.local/ns/shop/sa/client' },
    destination: {
      service: { namespace: 'shop', name: 'web', port: 80 },
      endpoint: { kind: 'pod', pod: fakePod('shop', 'web-1', 'n2'), ip: '10.244.2.3', port: 8080, nodeName: 'n2' },
    },
    security: 'mutual_tls',
    ...over,
  };
}

const podOf = (view: MeshIndex, key: string): MeshPod => {
  const pod = view.state.pods.get(key);
  if (!pod) throw new Error(`test mesh has no pod ${key}`);
  return pod;
};

/**
 * A GET of /items?id=7 from the pod `from` ("namespace/name") to `to.service`
 * ("namespace/name") on port 80, answered by the pod `to.endpoint` on port 8080 when given
 * (none: no endpoint was reached); `over` replaces any field.
 */
export function requestRecord(view: MeshIndex, from: string, to: { service: string; endpoint?: string }, over: Partial<RequestRecord> = {}): RequestRecord {
  const client = podOf(view, from);
  const [namespace = '', name = ''] = to.service.split('/');
  const server = to.endpoint === undefined ? undefined : podOf(view, to.endpoint);
  return fakeRequest({
    durationMs: 3.25,
    authority: `${name}.${namespace}`,
    path: '/items?id=7',
    responseBytes: 120,
    source: { pod: client, ip: client.podIP ?? '', identity: `spiffe://cluster.local/ns/${client.namespace}/sa/${client.serviceAccount}` },
    destination: {
      service: { namespace, name, port: 80 },
      ...(server ? { endpoint: { kind: 'pod', pod: server, ip: server.podIP ?? '', port: 8080, nodeName: server.nodeName } } : {}),
    },
    security: server?.nodeName === view.nodeName ? 'node_local' : 'mutual_tls',
    ...over,
  });
}
