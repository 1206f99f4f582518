import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { socketPair } from '../../../native/socketpair.js';
import { reset } from './reset.js';

const connected = async (): Promise<{ client: net.Socket; server: net.Server; accepted: Promise<net.Socket> }> => {
  const server = net.createServer();
  const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  return { client, server, accepted };
};

describe('reset', () => {
  it('resets a TCP socket: the peer sees ECONNRESET', async () => {
    const { client, server, accepted } = await connected();
    const peer = await accepted;
    const error = once(peer, 'error');
    reset(client);
    assert.equal(((await error)[0] as NodeJS.ErrnoException).code, 'ECONNRESET');
    server.close();
  });

  it('closes a TCP socket that already sent its FIN (Node cannot reset it then, and would never close it)', async () => {
    const { client, server, accepted } = await connected();
    const peer = await accepted;
    peer.on('error', () => {});
    client.on('error', () => {});
    client.end('bye');
    await new Promise((r) => setImmediate(r));
    const closed = new Promise((r) => client.once('close', r));
    reset(client);
    await closed;
    peer.destroy();
    server.close();
  });

  it('destroys an in-process socket pair end with ECONNRESET', async () => {
    const [a, b] = socketPair();
    a.on('error', () => {});
    const closed = new Promise((r) => a.once('close', r));
    reset(a);
    await closed;
    assert.equal((a.errored as NodeJS.ErrnoException | null)?.code, 'ECONNRESET');
    b.destroy();
  });
});
