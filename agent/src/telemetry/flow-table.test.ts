import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { FlowRecord } from '../redirect/index.js';
import { indexFromYaml, nodeAndShop } from '../testing/mesh.js';
import { FlowTable } from './flow-table.js';

const index = indexFromYaml(
  `${nodeAndShop('n1', '10.77.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: shop, annotations: { nodemesh.io/cgroup: /sys/fs/cgroup/client } }
spec: { nodeName: n1 }
status: { podIP: 10.244.1.2 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, ports: [{ port: 80 }] }
`,
  'n1',
);

const kernel = (cookie: bigint, port: number, open: boolean): FlowRecord => ({
  ip: '10.244.1.2',
  port,
  dstIP: '10.96.0.10',
  dstPort: 80,
  cgroupId: 1n, // indexFromYaml numbers cgroups from 1: the client pod
  cookie,
  startMs: 1_000_000 + port,
  ...(open ? {} : { endMs: 1_000_000 + port + 50 }),
  open,
  bytesSent: 10,
  bytesReceived: 20,
  packetsSent: 3,
  packetsReceived: 4,
});

it('joins kernel records and proxy decisions by socket cookie; either alone still makes a row', () => {
  const table = new FlowTable();
  const proxied = table.open({
    direction: 'outbound',
    cookie: 7n,
    sourceIP: '10.244.1.2',
    sourcePort: 40001,
    sourcePod: 'shop/client',
    dstIP: '10.96.0.10',
    dstPort: 80,
    service: 'shop/web',
    endpoint: { ip: '10.244.2.2', port: 8080, pod: 'shop/web-2', node: 'n2' },
    startMs: 1_040_001,
    bytesSent: 0,
    bytesReceived: 0,
    responseFlags: '-',
    security: 'mutual_tls',
    authorization: { allowed: true, reason: 'allowed by shop/allow-client', policy: 'shop/allow-client' },
  });
  table.close(proxied);
  table.open({ direction: 'outbound', sourceIP: '10.244.1.2', sourcePort: 40003, dstIP: '10.96.0.10', dstPort: 80, startMs: 1_040_003, bytesSent: 0, bytesReceived: 0, responseFlags: 'NR', security: 'none' });

  const rows = table.rows([kernel(7n, 40001, false), kernel(8n, 40002, true)], index, 1_050_000);
  assert.equal(rows.length, 3);
  const joined = rows.find((r) => r.source.port === 40001);
  assert.equal(joined?.endpoint?.pod, 'shop/web-2');
  assert.deepEqual([joined?.bytesSent, joined?.bytesReceived, joined?.state, joined?.durationMs], [10, 20, 'closed', 50]);
  assert.equal(joined?.security, 'mutual_tls');
  assert.equal(joined?.authorization?.policy, 'shop/allow-client');
  const kernelOnly = rows.find((r) => r.source.port === 40002);
  assert.equal(kernelOnly?.source.pod, 'shop/client');
  assert.equal(kernelOnly?.destination.service, 'shop/web');
  assert.equal(kernelOnly?.endpoint, null);
  assert.equal(kernelOnly?.state, 'open');
  const proxyOnly = rows.find((r) => r.source.port === 40003);
  assert.equal(proxyOnly?.responseFlags, 'NR');
  assert.equal(proxyOnly?.packetsSent, null);
  assert.deepEqual(rows.map((r) => r.source.port), [40003, 40002, 40001], 'newest first');
});

it('shows the bytes an open proxied connection has moved so far, and its final counts once closed', () => {
  const table = new FlowTable();
  let moved = { sent: 0, received: 0 };
  const flow = table.open({ direction: 'inbound', sourceIP: '10.244.2.9', sourcePort: 0, dstIP: '10.244.1.2', dstPort: 8080, startMs: 1_000, bytesSent: 0, bytesReceived: 0, responseFlags: '-', security: 'mutual_tls' });
  flow.live = () => moved;
  moved = { sent: 1200, received: 300 };
  const [open] = table.rows([], index, 2_000);
  assert.deepEqual([open?.state, open?.bytesSent, open?.bytesReceived], ['open', 1200, 300]);
  flow.bytesSent = 1500;
  flow.bytesReceived = 310;
  table.close(flow);
  const [closed] = table.rows([], index, 3_000);
  assert.deepEqual([closed?.state, closed?.bytesSent, closed?.bytesReceived], ['closed', 1500, 310]);
});
