// The integrity suite's mesh, shared by its test (test/integrity.test.ts) and `npm run soak`:
// two nodes, a client pod and a checksumming backend on each, and one Service per path —
// L4 and L7, same node and cross node, HTTP/1.1, HTTP/2 and gRPC, a route with retries and a
// mirror — each with the client variants it is run with.
import path from 'node:path';
import type { Testbed, TestbedSpec } from './testbed.js';
import { serviceDoc, testbedDocs, writeConfig, type Doc } from './mesh-config.js';

const NS = 'integrity';

/** What integrity-client.mjs prints. */
export interface IntegrityResult {
  requests: number;
  ok: number;
  lost: number;
  corrupted: number;
  misdelivered: number;
  failed: number;
  expectedFailures: number;
  faults: Record<string, number>;
  errors: Record<string, number>;
  examples: unknown[];
  bytesUp: number;
  bytesDown: number;
  seconds: number;
}

export interface IntegrityPath {
  name: string;
  url: string;
  protocol: 'h1' | 'h2' | 'grpc';
  variants: Array<{ name: string; args: string[] }>;
}

const FAULTS = { name: 'with faults', args: ['--faults', '0.1'] };
const CLOSE = { name: 'without keep-alive', args: ['--no-keepalive', '--faults', '0.1'] };

interface ServiceRow {
  name: string;
  ip: string;
  /** The backend pod: a1 is on the client's node, b1 on the other. */
  pod: 'a1' | 'b1';
  port: 80 | 9090;
  appProtocol: string;
  protocol: IntegrityPath['protocol'];
  variants: IntegrityPath['variants'];
}

const h1 = (name: string, ip: string, pod: 'a1' | 'b1', appProtocol: string): ServiceRow => ({ name, ip, pod, port: 80, appProtocol, protocol: 'h1', variants: [FAULTS, CLOSE] });

const SERVICES: ServiceRow[] = [
  h1('l4-same', '10.96.9.1', 'a1', 'tcp'),
  h1('l4-cross', '10.96.9.2', 'b1', 'tcp'),
  { name: 'l4-cross-h2', ip: '10.96.9.3', pod: 'b1', port: 80, appProtocol: 'tcp', protocol: 'h2', variants: [FAULTS] },
  h1('l7-same', '10.96.9.4', 'a1', 'http'),
  h1('l7-cross', '10.96.9.5', 'b1', 'http'),
  h1('l7-cross-retry-mirror', '10.96.9.6', 'b1', 'http'),
  { name: 'l7-same-h2', ip: '10.96.9.7', pod: 'a1', port: 80, appProtocol: 'http2', protocol: 'h2', variants: [FAULTS] },
  { name: 'l7-cross-h2', ip: '10.96.9.8', pod: 'b1', port: 80, appProtocol: 'http2', protocol: 'h2', variants: [FAULTS] },
  { name: 'grpc-same', ip: '10.96.9.9', pod: 'a1', port: 9090, appProtocol: 'grpc', protocol: 'grpc', variants: [FAULTS] },
  { name: 'grpc-cross', ip: '10.96.9.10', pod: 'b1', port: 9090, appProtocol: 'grpc', protocol: 'grpc', variants: [FAULTS] },
];

export const integrityPaths: IntegrityPath[] = SERVICES.map((s) => ({
  name: s.name,
  url: `http://${s.ip}:${s.port}`,
  protocol: s.protocol,
  variants: s.variants,
}));

const testbed: TestbedSpec = {
  nodes: [
    { name: 'n1', pods: [{ name: 'client', namespace: NS, labels: { app: 'client' } }, { name: 'a1', namespace: NS, labels: { pod: 'a1' } }] },
    { name: 'n2', pods: [{ name: 'b1', namespace: NS, labels: { pod: 'b1' } }] },
  ],
  namespaces: { [NS]: { 'nodemesh.io/mode': 'enabled' } },
};

function docs(tb: Testbed): Doc[] {
  const services = SERVICES.map((s) => {
    const doc = serviceDoc({ name: s.name, namespace: NS, clusterIP: s.ip, selector: { pod: s.pod }, ports: [{ name: 'main', port: s.port, targetPort: s.port === 80 ? 8080 : 9090 }] });
    doc.spec.ports[0].appProtocol = s.appProtocol;
    return doc;
  });
  const ref = (name: string) => ({ group: '', kind: 'Service', name, port: 80 });
  const route: Doc = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'retry-mirror', namespace: NS },
    spec: {
      parentRefs: [ref('l7-cross-retry-mirror')],
      rules: [{ backendRefs: [ref('l7-cross-retry-mirror')], retry: { codes: [503], attempts: 3, backoff: '5ms' }, filters: [{ type: 'RequestMirror', requestMirror: { backendRef: ref('l7-same') } }] }],
    },
  };
  return [...testbedDocs(tb), ...services, route];
}

export const integrityConfig = {
  testbed,
  backends: ['a1', 'b1'],
  /** Writes the standalone configuration both agents follow; returns its path. */
  write(tb: Testbed): string {
    const file = path.join(tb.scratchDir, 'mesh.yaml');
    writeConfig(file, docs(tb));
    return file;
  },
};
