// RequestRecord fakes for the telemetry observers' tests: a plausible outbound HTTP/1.1
// request from shop/client to shop/web, changed by the fields a test cares about.
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

export function requestRecord(over: Partial<RequestRecord> = {}): RequestRecord {
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
