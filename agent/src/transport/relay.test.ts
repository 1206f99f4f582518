import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { relay, type RelayResult } from './relay.js';

/** client → [relay listener] → server, all on loopback; returns the client socket. */
async function through(onServer: (s: net.Socket) => void) {
  const server = net.createServer({ allowHalfOpen: true }, onServer);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const results: Promise<RelayResult>[] = [];
  const proxy = net.createServer({ allowHalfOpen: true }, (down) => {
    const up = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    results.push(new Promise((resolve) => up.once('connect', () => resolve(relay(down, up)))));
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const client = net.connect({ port: (proxy.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const close = () => {
    server.close();
    proxy.close();
  };
  return { client, results, close };
}

const readAll = (s: net.Socket) =>
  new Promise<{ data: Buffer; error?: NodeJS.ErrnoException }>((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ data: Buffer.concat(chunks) }));
    s.on('error', (error: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error }));
  });

describe('relay', () => {
  it('carries a half-close across: the client ends, the server still answers', async () => {
    const t = await through((s) => {
      const got = readAll(s);
      void got.then(({ data }) => s.end(`got ${data.length} bytes`));
    });
    t.client.end(Buffer.alloc(300_000, 7));
    const answer = await readAll(t.client);
    assert.equal(answer.data.toString(), 'got 300000 bytes');
    const [result] = await Promise.all(t.results);
    assert.equal(result?.bytesFromDownstream, 300_000);
    assert.equal(result?.bytesFromUpstream, 'got 300000 bytes'.length);
    assert.equal(result?.error, undefined);
    t.close();
  });

  it('turns an upstream reset into a reset for the client, not a clean end', async () => {
    const t = await through((s) => s.once('data', () => s.resetAndDestroy()));
    t.client.write('hello');
    const answer = await readAll(t.client);
    assert.equal(answer.error?.code, 'ECONNRESET');
    const [result] = await Promise.all(t.results);
    assert.equal(result?.error?.code, 'ECONNRESET');
    t.close();
  });

  it('applies backpressure: a slow reader does not make the proxy buffer everything', async () => {
    let serverSocket: net.Socket | undefined;
    const t = await through((s) => {
      serverSocket = s;
      s.pause();
    });
    const chunk = Buffer.alloc(64 * 1024);
    let written = 0;
    // Write until the client's own buffer pushes back; a relay without backpressure would
    // keep draining the client into its memory and this loop would run to the cap.
    while (written < 256 * 1024 * 1024) {
      written += chunk.length;
      if (!t.client.write(chunk)) {
        const drained = await Promise.race([once(t.client, 'drain').then(() => true), new Promise((r) => setTimeout(() => r(false), 300))]);
        if (!drained) break;
      }
    }
    assert.ok(written < 256 * 1024 * 1024, `wrote ${written} bytes without pushback`);
    t.client.destroy();
    serverSocket?.destroy();
    await Promise.all(t.results);
    t.close();
  });
});
