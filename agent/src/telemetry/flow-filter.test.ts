import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { FlowRow } from './flow-table.js';
import { matchFlow, parseFlowFilter } from './flow-filter.js';

const row = (over: Partial<FlowRow> = {}): FlowRow => ({
  direction: 'outbound',
  source: { pod: 'shop/client', ip: '10.244.1.2', port: 40000 },
  destination: { ip: '10.96.0.10', port: 80, service: 'shop/web', pod: null },
  endpoint: { ip: '10.244.2.2', port: 8080, pod: 'store/web-1', node: 'n2' },
  protocol: 'tcp',
  bytesSent: 0,
  bytesReceived: 0,
  packetsSent: null,
  packetsReceived: null,
  state: 'closed',
  startTime: '',
  durationMs: 0,
  responseFlags: '-',
  security: null,
  authorization: null,
  ...over,
});

const match = (q: string, r = row()) => matchFlow(r, parseFlowFilter(new URLSearchParams(q)));

it('matches a pod or namespace at either end, a service by name or namespace/name', () => {
  assert.equal(match('pod=client'), true);
  assert.equal(match('pod=web-1'), true);
  assert.equal(match('pod=shop/web-1'), false);
  assert.equal(match('namespace=store'), true);
  assert.equal(match('namespace=other'), false);
  assert.equal(match('service=web'), true);
  assert.equal(match('service=shop/web'), true);
  assert.equal(match('service=other/web'), false);
  assert.equal(match('state=open'), false);
  const inbound = row({ direction: 'inbound', source: { pod: null, ip: '10.244.1.2', port: 0, identity: 'spiffe://cluster.local/ns/edge/sa/gw' } });
  assert.equal(match('namespace=edge', inbound), true);
});

it('refuses a state other than open or closed', () => {
  assert.throws(() => parseFlowFilter(new URLSearchParams('state=half')), /--state must be open or closed/);
});
