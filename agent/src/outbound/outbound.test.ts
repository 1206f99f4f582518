import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Clusters } from './cluster.js';
import { FlowTable } from '../telemetry/flow-table.js';
import { indexFromYaml, memoryLogger, nodeAndShop } from '../testing/mesh.js';
import type { MeshEndpointSlice, MeshState } from '../state/model.js';
import { Inbound } from '../inbound/inbound.js';
import { OutboundProxy, type Origin } from './outbound.js';
import { UpstreamDialer, type TunnelRequest } from './upstream-dial.js';

// Loopback stands in for the pod network: pods 127.0.0.2 and 127.0.0.3, a VIP 10.96.0.10, and
// 127.0.0.4 for an address outside the mesh.
const mesh = (backendPort: number) => `
apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 127.0.0.1 }] }
---
${nodeAndShop('n2', '127.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, annotations: { nodemesh.io/cgroup: /sys/fs/cgroup/client } }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.9 }
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.2 }
---
apiVersion: v1
kind: Pod
metadata: { name: dead-1, namespace: shop, labels: { app: dead } }
spec: { nodeName: n2 }
status: { podIP: 127.0.0.3 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ port: 80, targetPort: ${backendPort} }] }
---
apiVersion: v1
kind: Service
metadata: { name: dead, namespace: shop }
spec: { clusterIP: 10.96.0.11, selector: { app: dead }, ports: [{ port: 80, targetPort: 1 }] }
---
apiVersion: v1
kind: Service
metadata: { name: empty, namespace: shop }
spec: { clusterIP: 10.96.0.12, selector: { app: nobody }, ports: [{ port: 80, targetPort: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: db, namespace: shop }
spec: { clusterIP: 10.96.0.13, ports: [{ port: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: db-down, namespace: shop }
spec: { clusterIP: 10.96.0.14, ports: [{ port: 80 }] }
`;

/**
 * The endpoints of the selector-less Services db and db-down, outside the mesh. Loopback stands
 * in for that network too, and validation refuses loopback addresses in a slice (the proxy
 * must not be pointed at its node's own services): these slices go into the state directly.
 */
const withSlices =
  (backendPort: number) =>
  (state: MeshState): MeshState => {
    const slice = (name: string, serviceName: string, address: string, port: number): MeshEndpointSlice => ({
      namespace: 'shop',
      name,
      serviceName,
      addressType: 'IPv4',
      endpoints: [{ address, ready: true }],
      ports: [{ name: '', port, protocol: 'TCP' }],
    });
    const slices = [slice('db-1', 'db', '127.0.0.4', backendPort), slice('db-down-1', 'db-down', '127.0.0.5', 1)];
    return { ...state, endpointSlices: new Map(slices.map((s) => [`shop/${s.name}`, s])) };
  };

const result = (s: net.Socket) =>
  new Promise<{ data: string; error?: string }>((resolve) => {
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString()));
    s.on('end', () => resolve({ data }));
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ data, error: e.code ?? e.message }));
  });

describe('outbound proxy', () => {
  // Keyed by the client's source address, which each dial picks fresh: the record must exist
  // before the proxy accepts, as the kernel's does.
  const origins = new Map<string, Origin>();
  let sources = 0;
  const nextSource = () => `127.0.1.${++sources}`;
  const flows = new FlowTable();
  const { log, lines } = memoryLogger();
  let backend: net.Server;
  let outsider: net.Server;
  let proxy: OutboundProxy;
  let proxyPort: number;
  const tunnelled: TunnelRequest[] = [];

  /** Dials the proxy as a redirected pod would, with the origin the kernel would record. */
  const dial = async (dstIP: string | undefined, payload: string) => {
    const localAddress = nextSource();
    if (dstIP) origins.set(localAddress, { dstIP, dstPort: 80, cgroupId: 1n, cookie: BigInt(sources) });
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress, allowHalfOpen: true });
    s.end(payload);
    return { source: localAddress, ...(await result(s)) };
  };

  before(async () => {
    const serve = (name: string) => (s: net.Socket) => {
      let n = 0;
      s.on('error', () => {}); // the drain test resets it
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => s.end(`${name} got ${n}`));
    };
    backend = net.createServer({ allowHalfOpen: true }, serve('web-1'));
    backend.listen(0, '127.0.0.2');
    await once(backend, 'listening');
    // An address no pod has: the external endpoint of the selector-less Service, on the same port.
    outsider = net.createServer({ allowHalfOpen: true }, serve('outsider'));
    outsider.listen((backend.address() as net.AddressInfo).port, '127.0.0.4');
    await once(outsider, 'listening');
    const backendPort = (backend.address() as net.AddressInfo).port;
    const index = indexFromYaml(mesh(backendPort), 'n1', withSlices(backendPort));
    proxy = new OutboundProxy(
      { detectTimeoutMs: 200 },
      {
        lookupOrigin: (ip) => origins.get(ip) ?? null,
        index: () => index,
        dialer: new UpstreamDialer({
        hbonePort: 15008,
        connectTimeoutMs: 2000,
        identityOf: (pod) => ({
          spiffe: `spiffe://cluster.local/ns/${pod.namespace}/sa/${pod.serviceAccount}`,
          principal: `cluster.local/ns/${pod.namespace}/sa/${pod.serviceAccount}`,
        }),
        inbound: new Inbound({ index: () => index, connectTimeoutMs: 2000, detectTimeoutMs: 200, log }),
        // The other node's pod sits behind a tunnel that refuses, as a node whose pod is down would.
        tunnels: {
          connect: async (req: TunnelRequest) => {
            tunnelled.push(req);
            throw Object.assign(new Error(`HBONE to node ${req.node.name} refused: 503`), { status: 503 });
          },
        },
        }),
        l7: { serve: async () => assert.fail('no HTTP in these tests') },
        clusters: new Clusters(),
        flows,
        log,
      },
    );
    await proxy.listen('127.0.0.1', 0);
    proxyPort = Number(proxy.address.split(':')[1]);
  });

  after(async () => {
    await proxy.close(0);
    backend.close();
    outsider.close();
  });

  it('relays a redirected connection to an endpoint of its Service and records the flow', async () => {
    const r = await dial('10.96.0.10', 'hello');
    assert.deepEqual({ data: r.data, error: r.error }, { data: 'web-1 got 5', error: undefined });
    const row = flows.rows([], indexFromYaml(mesh(1), 'n1')).find((f) => f.source.ip === r.source);
    assert.equal(row?.source.pod, 'shop/client');
    assert.equal(row?.destination.service, 'shop/web');
    assert.equal(row?.endpoint?.pod, 'shop/web-1');
    assert.equal(row?.bytesSent, 5);
    assert.equal(row?.bytesReceived, 'web-1 got 5'.length);
    assert.equal(row?.state, 'closed');
    assert.equal(row?.responseFlags, '-');
    assert.equal(row?.security, 'node_local');
    assert.equal(row?.authorization?.allowed, true);
  });

  it('resets a connection to a Service without endpoints at once (UH)', async () => {
    const r = await dial('10.96.0.12', 'x');
    assert.equal(r.error, 'ECONNRESET');
    const row = flows.rows([], indexFromYaml(mesh(1), 'n1')).find((f) => f.source.ip === r.source);
    assert.equal(row?.responseFlags, 'UH');
  });

  it('tunnels to a pod on another node with the source pod identity; a refusal resets (UF)', async () => {
    const r = await dial('10.96.0.11', 'x');
    assert.equal(r.error, 'ECONNRESET');
    assert.deepEqual(tunnelled.at(-1), {
      sourceIdentity: 'spiffe://cluster.local/ns/shop/sa/default',
      node: { name: 'n2', ip: '127.0.0.1', port: 15008 },
      target: { ip: '127.0.0.3', port: 1 },
      forwardedFor: r.source,
    });
    const row = flows.rows([], indexFromYaml(mesh(1), 'n1')).find((f) => f.source.ip === r.source);
    assert.equal(row?.responseFlags, 'UF');
    assert.equal(row?.security, 'mutual_tls');
    assert.ok(lines.some((l) => String(l.reason).includes('refused: 503')));
  });

  it('dials an external endpoint (a slice address with no pod) directly, in plaintext, without a tunnel', async () => {
    const tunnels = tunnelled.length;
    const r = await dial('10.96.0.13', 'hello');
    assert.deepEqual({ data: r.data, error: r.error }, { data: 'outsider got 5', error: undefined });
    const row = flows.rows([], indexFromYaml(mesh(1), 'n1')).find((f) => f.source.ip === r.source);
    assert.equal(row?.destination.service, 'shop/db');
    assert.deepEqual({ pod: row?.endpoint?.pod, node: row?.endpoint?.node, ip: row?.endpoint?.ip }, { pod: null, node: null, ip: '127.0.0.4' });
    assert.equal(row?.security, 'none');
    assert.equal(row?.authorization, null, 'no destination proxy decided anything');

    const refused = await dial('10.96.0.14', 'x');
    assert.equal(refused.error, 'ECONNRESET');
    assert.equal(flows.rows([], indexFromYaml(mesh(1), 'n1')).find((f) => f.source.ip === refused.source)?.responseFlags, 'UF');
    assert.ok(lines.some((l) => String(l.reason) === 'external endpoint 127.0.0.5:1: ECONNREFUSED (does it listen on that port?)'));
    assert.equal(tunnelled.length, tunnels);
  });

  it('resets a connection the kernel did not redirect (no recorded origin)', async () => {
    const r = await dial(undefined, 'x');
    assert.equal(r.error, 'ECONNRESET');
    assert.ok(lines.some((l) => String(l.msg).includes('no original destination')));
  });

  it('drains on close: open connections get the deadline, then are reset', async () => {
    const localAddress = nextSource();
    origins.set(localAddress, { dstIP: '10.96.0.10', dstPort: 80, cgroupId: 1n, cookie: BigInt(sources) });
    const s = net.connect({ host: '127.0.0.1', port: proxyPort, localAddress, allowHalfOpen: true });
    await once(s, 'connect');
    s.write('still talking');
    const ended = result(s);
    const started = Date.now();
    await proxy.close(200);
    assert.equal((await ended).error, 'ECONNRESET');
    assert.ok(Date.now() - started >= 150);
  });
});
