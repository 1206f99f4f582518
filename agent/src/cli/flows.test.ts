import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FlowRow } from '../telemetry/flow-table.js';
import { renderFlows } from './flows.js';
import type { Colours } from './table.js';

const plain: Colours = { bold: (s) => s, red: (s) => s, green: (s) => s, dim: (s) => s };
const flow = (over: Partial<FlowRow> = {}): FlowRow => ({
  direction: 'outbound',
  source: { pod: 'shop/client', ip: '10.0.1.5', port: 41234 },
  destination: { ip: '10.96.0.12', port: 7000, service: 'shop/echo-remote', pod: null },
  endpoint: { ip: '10.0.2.7', port: 9000, pod: 'shop/web-2', node: 'n2' },
  protocol: 'tcp',
  bytesSent: 50_000,
  bytesReceived: 50_000,
  packetsSent: null,
  packetsReceived: null,
  state: 'closed',
  startTime: '2024-01-01T00:00:00.000Z',
  durationMs: 12,
  responseFlags: '-',
  security: 'mutual_tls',
  authorization: { allowed: true, reason: 'policy', policy: 'shop/allow-client' },
  ...over,
});

/** Every cell of a data row starts where its header does, after a gap. */
function assertAligned(head: string, row: string): void {
  for (const m of head.matchAll(/\S+/g)) {
    if (m.index === 0) continue;
    assert.notEqual(row[m.index], ' ', `${m[0]} column starts where its header does:\n${head}\n${row}`);
    assert.equal(row[m.index - 1], ' ', `${m[0]} column follows a gap:\n${head}\n${row}`);
  }
}

describe('nodemesh flows layout', () => {
  it('fits a typical row in 80 columns, aligned: names without their namespace, compact values, a denial in STATE', () => {
    const lines = renderFlows(
      [
        flow(),
        flow({ direction: 'inbound', state: 'open', durationMs: 200_000, bytesReceived: 300, security: 'node_local', authorization: { allowed: false, reason: 'deny', policy: 'shop/deny-all' } }),
      ],
      plain,
      80,
    );
    for (const l of lines) assert.ok(l.length <= 80, `${l.length} columns: ${l}`);
    assert.match(lines[0] as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE\s+TIME\s+SEC$/);
    assert.match(lines[1] as string, /^out\s+client\s+echo-remote:7000\s+web-2@n2\s+48\.8K\s+48\.8K\s+closed\s+12ms\s+mTLS$/);
    assert.match(lines[2] as string, /^in\s+client\s+echo-remote:7000\s+web-2@n2\s+48\.8K\s+300B\s+open DENY\s+3m20s\s+local$/);
    for (const row of lines.slice(1)) assertAligned(lines[0] as string, row);
  });

  it('fits 80 columns with long names: they lose their namespace, then their middle; ports stay whole', () => {
    const long = 'a-namespace-with-a-very-long-name';
    const lines = renderFlows(
      [
        flow({
          source: { pod: `${long}/a-client-pod-with-a-generated-suffix-7d9f8c6b5-x2x4q`, ip: '10.0.1.5', port: 41234 },
          destination: { ip: '10.96.0.12', port: 8080, service: `${long}/a-service-name-that-goes-on-and-on`, pod: null },
          endpoint: { ip: '10.0.2.7', port: 9000, pod: `${long}/a-server-pod-7d9f8c6b5-k8k8k`, node: 'worker-node-3' },
          responseFlags: 'UF',
          durationMs: 3_600_000 * 30,
          bytesSent: 5 * 1024 ** 3,
        }),
        flow({ source: { pod: null, ip: '10.0.9.9', port: 55555 }, destination: { ip: '10.0.2.8', port: 9000, service: null, pod: null }, endpoint: null, security: null, authorization: null }),
      ],
      plain,
      80,
    );
    for (const l of lines) assert.ok(l.length <= 80, `${l.length} columns: ${l}`);
    assert.match(lines[0] as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE\s+TIME\s+SEC$/);
    assert.match(lines[1] as string, /^out\s+a-cli…x2x4q\s+a-s…on:8080\s+a-s…8k@wor…\s+5\.0G\s+48\.8K\s+closed UF\s+30h0m\s+mTLS$/);
    assert.match(lines[2] as string, /^out\s+10\.….9:555…\s+10\.….8:9000\s+-\s+48\.8K\s+48\.8K\s+closed\s+12ms\s+-$/);
    assertAligned(lines[0] as string, lines[1] as string);
    assertAligned(lines[0] as string, lines[2] as string);
  });

  it('shows the deciding policy in its own column on a wide terminal', () => {
    const lines = renderFlows([flow(), flow({ authorization: { allowed: false, reason: 'deny', policy: 'shop/deny-all' } })], plain, 120);
    for (const l of lines) assert.ok(l.length <= 120, `${l.length} columns: ${l}`);
    assert.match(lines[0] as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE\s+TIME\s+SEC\s+POLICY$/);
    assert.match(lines[1] as string, /\s+closed\s+12ms\s+mTLS\s+allow shop\/allow-client$/);
    assert.match(lines[2] as string, /\s+closed\s+12ms\s+mTLS\s+DENY shop\/deny-all$/);
    assertAligned(lines[0] as string, lines[2] as string);
    assert.doesNotMatch(lines[2] as string, /DENY\s+\S+\s+\S+\s+DENY/, 'the denial shows once, under POLICY');
  });

  it('shows an inbound plaintext connection (PERMISSIVE) as plain, from its address when no pod has it', () => {
    const lines = renderFlows(
      [
        flow({
          direction: 'inbound',
          source: { pod: null, ip: '10.244.2.1', port: 51000 },
          destination: { ip: '10.244.2.2', port: 8080, service: null, pod: 'shop/web-2' },
          endpoint: null,
          security: 'none',
          authorization: null,
        }),
      ],
      plain,
      80,
    );
    assert.match(lines[1] as string, /^in\s+10\.244\.2\.1:51000\s+web-2:8080\s+-\s+48\.8K\s+48\.8K\s+closed\s+12ms\s+plain/);
  });

  it('gives up SEC, then TIME, before squeezing names on a narrow terminal', () => {
    const [head70] = renderFlows([flow()], plain, 70);
    assert.match(head70 as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE\s+TIME$/);
    const lines = renderFlows([flow()], plain, 64);
    assert.match(lines[0] as string, /^DIR\s+SOURCE\s+DESTINATION\s+ENDPOINT\s+SENT\s+RECV\s+STATE$/);
    for (const l of lines) assert.ok(l.length <= 64, `${l.length} columns: ${l}`);
  });

  it('says so when there are no flows', () => {
    assert.deepEqual(renderFlows([], plain, 80), ['no flows yet']);
  });
});
