import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { indexFromYaml } from '../testing/mesh.js';
import { AccessLog, parseAccessLogMode } from './access-log.js';
import type { ProxyFlow } from './flow-table.js';

const index = indexFromYaml(
  `apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 10.77.0.1 }] }
`,
  'n1',
);

const flow = (responseFlags: ProxyFlow['responseFlags']): ProxyFlow => ({
  direction: 'outbound',
  sourceIP: '10.244.1.2',
  sourcePort: 40000,
  dstIP: '10.96.0.14',
  dstPort: 80,
  startMs: 1000,
  endMs: 1250,
  bytesSent: 5,
  bytesReceived: 9,
  responseFlags,
  security: 'none',
});

function logger(mode: string, random = () => 0.5) {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: new AccessLog(parseAccessLogMode(mode), { node: 'n1', index: () => index, trustDomain: 'cluster.local', destination, random }), lines };
}

it('writes one access line per closed connection with what an operator looks for', () => {
  const { log, lines } = logger('all');
  log.closed(flow('UH'));
  assert.equal(lines.length, 1);
  const l = lines[0] as Record<string, any>;
  assert.equal(l.type, 'access');
  assert.equal(l.node, 'n1');
  assert.deepEqual(l.src, { addr: '10.244.1.2:40000', workload: null, pod: null, namespace: null, identity: null });
  assert.deepEqual([l.dst.addr, l.responseFlags, l.bytesSent, l.bytesReceived, l.durationMs, l.protocol], ['10.96.0.14:80', 'UH', 5, 9, 250, 'tcp']);
});

it('off writes nothing; sampled thins successful connections but keeps every failure', () => {
  const off = logger('off');
  off.log.closed(flow('UF'));
  assert.equal(off.lines.length, 0);
  const sampled = logger('sampled:0.25', () => 0.5);
  sampled.log.closed(flow('-'));
  sampled.log.closed(flow('UF'));
  assert.deepEqual(sampled.lines.map((l) => l.responseFlags), ['UF']);
  const lucky = logger('sampled:0.25', () => 0.1);
  lucky.log.closed(flow('-'));
  assert.equal(lucky.lines.length, 1);
});

it('refuses a malformed --access-log value, naming the flag', () => {
  for (const bad of ['some', 'sampled:0', 'sampled:1.5', 'sampled:x']) {
    assert.throws(() => parseAccessLogMode(bad), /--access-log must be off, all or sampled:<ratio>/);
  }
});
