// The inbound plaintext listener's own part: opening a listener per pod from the fd the kernel
// side hands over, retrying pods not ready yet, asking Inbound for each connection, and the
// flow it leaves. Root only: the fake steering opens its listening socket through the same
// setns path as the real one, into the test's own netns, on loopback (127.0.0.5 plays a
// plaintext client that is a known pod, 127.0.0.6 one that is not).
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { listenInNetns, openOwnNetns } from '../../../native/netns.js';
import type { MeshIndex } from '../state/mesh-index.js';
import { FlowTable, type FlowRow } from '../telemetry/flow-table.js';
import { freePort } from '../testing/ports.js';
import { indexFromYaml, memoryLogger, nodeAndShop } from '../testing/mesh.js';
import type { InboundRequest, InboundResult } from './inbound.js';
import { PlaintextInbound, type PlaintextPod } from './plaintext.js';

const notRoot = process.getuid?.() !== 0 ? 'needs root: the listener is opened through setns' : false;

const YAML = `${nodeAndShop('n1', '127.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.2 }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
---
apiVersion: v1
kind: Pod
metadata: { name: outsider, namespace: legacy }
spec: { nodeName: n1 }
status: { podIP: 127.0.0.5 }
`;

const WEB: PlaintextPod = { name: 'shop/web-1', podIP: '127.0.0.2', cgroupPath: '/cgroup/web-1' };

/** Sends `data` from `from`, half-closes, and collects the answer; 'ECONNRESET' etc. on error. */
function exchange(port: number, from: string, data: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from }, () => s.end(data));
    let reply = '';
    s.on('data', (d) => (reply += d));
    s.on('close', () => resolve(reply));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

const eventually = async <T>(what: string, probe: () => T | undefined): Promise<T> => {
  for (let i = 0; i < 100; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
};

describe('inbound plaintext: a listener per PERMISSIVE pod, each connection an inbound flow with security none', { skip: notRoot }, () => {
  let index: MeshIndex;
  let ownNetns: number;
  let echo: net.Server;
  let echoPort = 0;
  let port = 0;
  let flows: FlowTable;
  let plaintext: PlaintextInbound;
  const { log, lines } = memoryLogger();
  const calls: InboundRequest[] = [];
  let deny = false;
  let notReady = 0;
  const detached: string[] = [];

  /** The kernel side, faked: a real listening socket, opened through setns, not steered. */
  const steering = {
    attach: (_pod: PlaintextPod): number | null => {
      if (notReady > 0) {
        notReady -= 1;
        return null;
      }
      return listenInNetns(ownNetns, ownNetns, { expectAddress: '127.0.0.1', host: '127.0.0.1', port, backlog: 16 }, 'test');
    },
    detach: (podIP: string) => void detached.push(podIP),
  };
  /** Inbound, faked: every allowed connection goes to the echo server, which plays the pod. */
  const inbound = {
    open: async (req: InboundRequest): Promise<InboundResult> => {
      calls.push(req);
      const pod = index.podsByIP.get('127.0.0.2');
      if (deny) return { status: 403, reason: 'no ALLOW policy matched (shop/allow-mesh)', ...(pod ? { pod } : {}), decision: { allowed: false, reason: 'no ALLOW policy matched (shop/allow-mesh)' } };
      const socket = net.connect({ host: '127.0.0.1', port: echoPort, allowHalfOpen: true });
      await new Promise((resolve) => socket.once('connect', resolve));
      return { stream: socket, podSocket: socket, pod: pod!, decision: { allowed: true, reason: 'no policy' } };
    },
  };
  const rows = (): FlowRow[] => flows.rows([], index);

  before(async () => {
    ownNetns = openOwnNetns();
    index = indexFromYaml(YAML, 'n1');
    echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as net.AddressInfo).port;
  });
  after(() => {
    echo?.close();
    if (ownNetns !== undefined) fs.closeSync(ownNetns);
  });
  beforeEach(async () => {
    await plaintext?.close(100);
    port = await freePort();
    flows = new FlowTable();
    plaintext = new PlaintextInbound({ steering, inbound, flows, index: () => index, detectTimeoutMs: 250, log, retryMs: 30 });
    calls.length = 0;
    detached.length = 0;
    deny = false;
    notReady = 0;
  });

  it('relays a steered connection and records it as inbound plaintext, the client named by its address', async () => {
    plaintext.update([WEB]);
    assert.equal(plaintext.listeners, 1);
    assert.equal(await exchange(port, '127.0.0.5', 'hello'), 'hello');
    assert.deepEqual(calls[0], { source: { ip: '127.0.0.5' }, target: { ip: '127.0.0.1', port }, detectTimeoutMs: 250, onDenied: calls[0]?.onDenied });
    const row = await eventually('the closed flow', () => rows().find((r) => r.state === 'closed'));
    assert.equal(row.direction, 'inbound');
    assert.equal(row.security, 'none');
    assert.deepEqual(row.source, { pod: 'legacy/outsider', ip: '127.0.0.5', port: row.source.port });
    assert.ok(row.source.port > 0);
    assert.equal(row.destination.pod, 'shop/web-1');
    assert.equal(row.bytesSent, 5);
    assert.equal(row.bytesReceived, 5);
    assert.equal(row.authorization?.allowed, true);

    assert.equal(await exchange(port, '127.0.0.6', 'x'), 'x');
    const unknown = await eventually('the second flow', () => rows().find((r) => r.source.ip === '127.0.0.6'));
    assert.equal(unknown.source.pod, null, 'an address no pod has stays unnamed');
  });

  it('a denied connection is reset before any byte reaches the pod, and the flow names the reason', async () => {
    deny = true;
    plaintext.update([WEB]);
    const reply = await exchange(port, '127.0.0.5', 'secret');
    assert.ok(reply === 'ECONNRESET' || reply === 'EPIPE' || reply === '', `got ${JSON.stringify(reply)}`);
    const row = await eventually('the denied flow', () => rows().find((r) => r.authorization?.allowed === false));
    assert.equal(row.security, 'none');
    assert.equal(row.bytesSent, 0);
    assert.equal(row.responseFlags, '-');
    assert.match(row.authorization?.reason ?? '', /shop\/allow-mesh/);
  });

  it('a pod whose netns is not known yet is retried until its listener opens; a pod that leaves is detached and closed', async () => {
    notReady = 2;
    plaintext.update([WEB]);
    assert.equal(plaintext.listeners, 0);
    assert.equal(lines.filter((l) => l.msg?.toString().startsWith('inbound plaintext: no listener')).length > 0, true, 'logged once');
    await eventually('the retried listener', () => (plaintext.listeners === 1 ? true : undefined));
    assert.equal(await exchange(port, '127.0.0.5', 'late'), 'late');

    plaintext.update([]);
    assert.deepEqual(detached, ['127.0.0.2']);
    assert.equal(plaintext.listeners, 0);
    assert.equal(await exchange(port, '127.0.0.5', 'gone'), 'ECONNREFUSED');
  });

  it('close() stops accepting and resets connections still open after the drain time', async () => {
    plaintext.update([WEB]);
    const held = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.5' });
    const ended = new Promise<string>((resolve) => {
      held.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      held.on('close', () => resolve('closed'));
    });
    await new Promise((resolve) => held.once('connect', resolve));
    held.write('x');
    await eventually('the open flow', () => (flows.openCount === 1 ? true : undefined));
    await plaintext.close(50);
    assert.equal(await ended, 'ECONNRESET');
    assert.equal(await exchange(port, '127.0.0.5', 'after'), 'ECONNREFUSED');
  });
});
