import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type tls from 'node:tls';
import { HboneClient, type HboneClientOptions } from './client.js';
import { freePort } from '../testing/ports.js';
import { HboneError, type HboneStream } from './protocol.js';
import { HboneServer, type HboneServerOptions, type HboneTunnelRequest } from './server.js';
import {
  acceptTrustDomain,
  dialTarget,
  makePki,
  readAll,
  recordingLog,
  spiffeIdOf,
  startEcho,
  type EchoServer,
  type Issued,
  type TestCa,
  type TestPki,
} from '../testing/hbone.js';

const AGENT_ID = 'spiffe://cluster.local/ns/nodemesh-system/sa/nodemesh-agent';
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/client';

let pki: TestPki;
let ca: TestCa;
let otherCa: TestCa;
let serverCert: Issued;
let clientCert: Issued;
let echo: EchoServer;

before(async () => {
  pki = makePki();
  ca = pki.newCa('mesh-ca');
  otherCa = pki.newCa('other-ca');
  serverCert = ca.issue('node-n2', { uris: [AGENT_ID], dns: ['n2'] });
  clientCert = ca.issue('client', { uris: [CLIENT_ID] });
  echo = await startEcho();
});

after(async () => {
  await echo.close();
  pki.cleanup();
});

const verifyServer = (nodeName: string, cert: tls.PeerCertificate): true | string => {
  if (spiffeIdOf(cert) !== AGENT_ID) return `expected ${AGENT_ID}, got ${spiffeIdOf(cert)}`;
  const dns = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('DNS:'));
  return dns.includes(`DNS:${nodeName}`) ? true : `certificate is for ${dns.join(',')}, not node ${nodeName}`;
};

async function startServer(over: Partial<HboneServerOptions> = {}) {
  const opened: HboneTunnelRequest[] = [];
  const server = new HboneServer({
    credentials: () => ({ key: serverCert.key, cert: serverCert.cert, ca: ca.cert }),
    peerIdentity: acceptTrustDomain('cluster.local'),
    open: async (t) => {
      opened.push(t);
      return dialTarget(t.target, 2000);
    },
    log: recordingLog('silent').log,
    ...over,
  });
  await server.listen('127.0.0.1', 0);
  const port = Number(server.address.split(':').pop());
  return { server, opened, node: { name: 'n2', ip: '127.0.0.1', port } };
}

function makeClient(over: Partial<HboneClientOptions> = {}, cert: Issued = clientCert, serial = '1') {
  return new HboneClient({
    credentials: (id) => (id === CLIENT_ID ? { key: cert.key, cert: cert.cert, ca: ca.cert, serial } : undefined),
    verifyServer,
    log: recordingLog('silent').log,
    connectTimeoutMs: 3000,
    ...over,
  });
}

const toEcho = () => ({ ip: '127.0.0.1', port: echo.port });

const closed = (s: HboneStream) => (s.destroyed ? Promise.resolve() : once(s, 'close').then(() => undefined));

async function rejection(p: Promise<unknown>): Promise<HboneError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof HboneError, `expected an HboneError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the connect to be rejected');
}

describe('HboneClient ↔ HboneServer', () => {
  it('tunnels bytes both ways; the client half-close reaches the pod, the pod answers and closes', async () => {
    const { server, opened, node } = await startServer();
    const client = makeClient();
    const tunnel = await client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho(), forwardedFor: '10.244.1.7' });
    const payload = Buffer.alloc(1_000_000, 'x');
    const got = readAll(tunnel);
    tunnel.end(payload);
    const answer = await got;
    assert.equal(answer.error, undefined);
    assert.equal(answer.ended, true);
    assert.equal(answer.data.length, payload.length);
    assert.equal(opened[0]?.peer, CLIENT_ID);
    assert.equal(opened[0]?.forwardedFor, '10.244.1.7');
    assert.deepEqual(opened[0]?.target, toEcho());
    assert.equal(opened[0]?.headers[':method'], 'CONNECT');
    await client.close();
    await server.close(100);
  });

  it('carries the pod half-close to the client while the client keeps sending', async () => {
    const pod = await startEcho((s) => {
      s.end('bye');
      return true;
    });
    const { server, node } = await startServer();
    const client = makeClient();
    const tunnel = await client.connect({ sourceIdentity: CLIENT_ID, node, target: { ip: '127.0.0.1', port: pod.port } });
    const answer = await readAll(tunnel);
    assert.equal(answer.data.toString(), 'bye');
    assert.equal(answer.ended, true);
    // After the pod's FIN, the client's bytes and FIN still reach it.
    const podSide = pod.sockets[0];
    assert.ok(podSide);
    const podGot = readAll(podSide);
    tunnel.end(Buffer.alloc(50_000, 'y'));
    const received = await podGot;
    assert.equal(received.data.length, 50_000);
    assert.equal(received.ended, true);
    await closed(tunnel);
    await client.close();
    await server.close(100);
    await pod.close();
  });

  it('turns a pod reset into ECONNRESET on the client tunnel', async () => {
    const pod = await startEcho((s) => {
      s.once('data', () => s.resetAndDestroy());
      return true;
    });
    const { server, node } = await startServer();
    const client = makeClient();
    const tunnel = await client.connect({ sourceIdentity: CLIENT_ID, node, target: { ip: '127.0.0.1', port: pod.port } });
    tunnel.write('hello');
    const answer = await readAll(tunnel);
    assert.equal(answer.error?.code, 'ECONNRESET');
    assert.match(answer.error?.message ?? '', /CONNECT_ERROR/);
    await client.close();
    await server.close(100);
    await pod.close();
  });

  it('turns a client reset into a reset of the pod connection', async () => {
    const pod = await startEcho();
    const { server, node } = await startServer();
    const client = makeClient();
    const tunnel = await client.connect({ sourceIdentity: CLIENT_ID, node, target: { ip: '127.0.0.1', port: pod.port } });
    tunnel.write('ping');
    await once(tunnel, 'data');
    const podSide = pod.sockets[0];
    assert.ok(podSide);
    const podClosed = readAll(podSide);
    tunnel.resetAndDestroy();
    const seen = await podClosed;
    assert.equal(seen.error?.code, 'ECONNRESET');
    assert.equal(seen.ended, false);
    await client.close();
    await server.close(100);
    await pod.close();
  });

  it('carries 20 concurrent tunnels over one TLS connection', async () => {
    const { server, node } = await startServer();
    const client = makeClient();
    const tunnels = await Promise.all(
      Array.from({ length: 20 }, () => client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() })),
    );
    const answers = await Promise.all(
      tunnels.map((t, i) => {
        const got = readAll(t);
        t.end(`tunnel ${i} `.repeat(1000));
        return got;
      }),
    );
    answers.forEach((a, i) => assert.equal(a.data.toString(), `tunnel ${i} `.repeat(1000)));
    assert.equal(server.stats.connections, 1);
    assert.equal(server.stats.tunnels, 20);
    assert.equal(client.sessions.length, 1);
    await client.close();
    await server.close(100);
  });

  it("respects the server's SETTINGS_MAX_CONCURRENT_STREAMS by opening more sessions", async () => {
    const { server, node } = await startServer({ maxConcurrentStreams: 5 });
    const client = makeClient();
    const tunnels = await Promise.all(
      Array.from({ length: 12 }, () => client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() })),
    );
    assert.equal(server.stats.connections, 3);
    assert.ok(client.sessions.every((s) => s.maxStreams === 5));
    for (const t of tunnels) t.resume().end();
    await Promise.all(tunnels.map(closed));
    await client.close();
    await server.close(100);
  });

  it('passes a refusal from open() to the caller with its status and reason', async () => {
    const { server, node } = await startServer({
      open: async () => ({ status: 403, reason: 'AuthorizationPolicy shop/deny-client denies spiffe://cluster.local/ns/shop/sa/client' }),
    });
    const client = makeClient();
    const err = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node, target: { ip: '10.244.2.2', port: 9000 } }));
    assert.equal(err.code, 'NM_ERR_HBONE_REFUSED');
    assert.equal(err.status, 403);
    assert.equal(
      err.message,
      `HBONE to node n2 (127.0.0.1:${node.port}) for 10.244.2.2:9000 refused: 403 AuthorizationPolicy shop/deny-client denies spiffe://cluster.local/ns/shop/sa/client`,
    );
    assert.equal(server.stats.refusedTunnels, 1);
    // The refusal does not spoil the session.
    const ok = await client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() }).catch((e: HboneError) => e);
    assert.equal((ok as HboneError).status, 403);
    assert.equal(server.stats.connections, 1);
    await client.close();
    await server.close(100);
  });

  it('answers 503 when the pod refuses the connection, 504 when open() does not settle in time', async () => {
    const { server, node } = await startServer();
    const client = makeClient();
    const port = await freePort();
    const refused = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node, target: { ip: '127.0.0.1', port } }));
    assert.equal(refused.status, 503);
    assert.match(refused.message, new RegExp(`for 127\\.0\\.0\\.1:${port} refused: 503 connect to 127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    await server.close(100);

    const slow = await startServer({ open: () => new Promise(() => {}), connectTimeoutMs: 200 });
    const timedOut = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node: slow.node, target: toEcho() }));
    assert.equal(timedOut.status, 504);
    assert.match(timedOut.message, /refused: 504 no connection to 127\.0\.0\.1:\d+ within 200 ms/);
    await client.close();
    await slow.server.close(100);
  });

  it('rejects a node whose certificate verifyServer refuses, before sending any CONNECT', async () => {
    const { server, node } = await startServer();
    const client = makeClient();
    const err = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node: { ...node, name: 'n3' }, target: toEcho() }));
    assert.equal(err.code, 'NM_ERR_HBONE_PEER_IDENTITY');
    assert.equal(
      err.message,
      `HBONE to node n3 (127.0.0.1:${node.port}): the node's certificate was refused: certificate is for DNS:n2, not node n3`,
    );
    assert.equal(server.stats.tunnels + server.stats.refusedTunnels, 0);
    assert.equal(client.sessions.length, 0);
    await client.close();
    await server.close(100);
  });

  it('explains a TLS failure: the server does not trust our CA', async () => {
    const { server, node } = await startServer();
    const stranger = otherCa.issue('stranger', { uris: [CLIENT_ID] });
    const client = makeClient({}, stranger);
    const err = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() }));
    assert.equal(err.code, 'NM_ERR_HBONE_TLS');
    assert.match(err.message, /^TLS handshake with node n2 \(127\.0\.0\.1:\d+\) failed: .* — is the peer in the same trust domain \/ CA\?$/);
    assert.equal(server.stats.refusedHandshakes, 1);
    await client.close();
    await server.close(100);
  });

  it('explains a server that refuses our identity (GOAWAY with the reason)', async () => {
    const { server, node } = await startServer();
    const foreign = ca.issue('foreign', { uris: ['spiffe://other.local/ns/shop/sa/client'] });
    const client = makeClient({}, foreign);
    const err = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() }));
    assert.equal(err.code, 'NM_ERR_HBONE_SESSION');
    assert.match(err.message, /the node closed the session: peer refused: trust domain other\.local is not cluster\.local/);
    assert.equal(server.stats.refusedIdentities, 1);
    await client.close();
    await server.close(100);
  });

  it('explains an unreachable node, a node that never finishes TLS, and missing credentials', async () => {
    const client = makeClient({ connectTimeoutMs: 300 });
    const port = await freePort();
    const down = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node: { name: 'n9', ip: '127.0.0.1', port }, target: toEcho() }));
    assert.equal(down.code, 'NM_ERR_HBONE_UNREACHABLE');
    assert.match(down.message, /HBONE to node n9 \(127\.0\.0\.1:\d+\) failed: ECONNREFUSED — is the nodemesh agent running there/);

    const silent = net.createServer(() => {});
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const silentPort = (silent.address() as net.AddressInfo).port;
    const stuck = await rejection(
      client.connect({ sourceIdentity: CLIENT_ID, node: { name: 'n8', ip: '127.0.0.1', port: silentPort }, target: toEcho() }),
    );
    assert.equal(stuck.code, 'NM_ERR_HBONE_CONNECT_TIMEOUT');
    assert.match(stuck.message, /TLS handshake timed out after 300 ms — maybe a NetworkPolicy or firewall blocks HBONE port \d+/);
    silent.close();

    const none = await rejection(client.connect({ sourceIdentity: 'spiffe://cluster.local/ns/shop/sa/nobody', node: { name: 'n9', ip: '127.0.0.1', port }, target: toEcho() }));
    assert.equal(none.code, 'NM_ERR_HBONE_NO_CREDENTIALS');
    await client.close();
  });

  it('opens a new session when the certificate serial changes; the old tunnel lives on until it closes', async () => {
    const { server, node } = await startServer();
    const renewed = ca.issue('client-renewed', { uris: [CLIENT_ID] });
    let current = { cert: clientCert, serial: '1' };
    const client = new HboneClient({
      credentials: () => ({ key: current.cert.key, cert: current.cert.cert, ca: ca.cert, serial: current.serial }),
      verifyServer,
      log: recordingLog('silent').log,
    });
    const old = await client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() });
    old.write('before ');
    await once(old, 'data');

    current = { cert: renewed, serial: '2' };
    const fresh = await client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() });
    assert.equal(server.stats.connections, 2);
    const sessions = client.sessions.sort((a, b) => a.serial.localeCompare(b.serial));
    assert.deepEqual(
      sessions.map((s) => [s.serial, s.draining, s.streams]),
      [
        ['1', true, 1],
        ['2', false, 1],
      ],
    );
    // Both tunnels still carry bytes; the old one ends normally.
    const oldRest = readAll(old);
    old.end('after rotation');
    assert.equal((await oldRest).data.toString(), 'after rotation');
    const freshGot = readAll(fresh);
    fresh.end('fresh');
    assert.equal((await freshGot).data.toString(), 'fresh');
    // The drained session closes once its last tunnel is done.
    for (let i = 0; i < 50 && client.sessions.some((s) => s.serial === '1'); i += 1) await sleep(20);
    assert.deepEqual(client.sessions.map((s) => s.serial), ['2']);
    await client.close();
    await server.close(100);
  });

  it('drains on server close: open tunnels work until the deadline, then are reset', async () => {
    const { server, node } = await startServer();
    const client = makeClient();
    const tunnel: HboneStream = await client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() });
    const seen = readAll(tunnel);
    const closing = server.close(300);
    tunnel.write('still here');
    await sleep(100);
    const refused = await rejection(client.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() }));
    assert.match(refused.code, /NM_ERR_HBONE_(UNREACHABLE|SESSION)/);
    await closing;
    const result = await seen;
    assert.equal(result.data.toString(), 'still here');
    assert.equal(result.error?.code, 'ECONNRESET');
    await client.close();
  });
});

describe('HboneClient through nghttpx (an independent HTTP/2 CONNECT proxy with client certificates)', () => {
  let nghttpx: ChildProcess | undefined;
  let forwardProxy: http.Server | undefined;
  let target: EchoServer | undefined;

  after(async () => {
    nghttpx?.kill('SIGTERM');
    if (nghttpx && nghttpx.exitCode === null) await once(nghttpx, 'exit');
    forwardProxy?.close();
    await target?.close();
  });

  it('tunnels a TCP connection to an echo server over mutual TLS 1.3 and h2', async () => {
    try {
      execFileSync('nghttpx', ['--version'], { stdio: 'ignore' });
    } catch {
      assert.fail('nghttpx is not installed: run scripts/install-deps.sh (Debian package nghttp2-proxy)');
    }
    // nghttpx in --http2-proxy mode does not dial CONNECT targets itself: it forwards the
    // CONNECT to its backend as HTTP/1.1 (a forward proxy such as squid). A few lines of
    // node:http stand in for that backend and dial the target.
    const connects: string[] = [];
    forwardProxy = http.createServer((_req, res) => res.writeHead(405).end());
    forwardProxy.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      connects.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        socket.pipe(upstream);
        upstream.pipe(socket);
      });
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
    });
    forwardProxy.listen(0, '127.0.0.1');
    await once(forwardProxy, 'listening');
    const backendPort = (forwardProxy.address() as net.AddressInfo).port;

    const proxyCert = ca.issue('nghttpx', { uris: [AGENT_ID], dns: ['nghttpx-node'] });
    const port = await freePort();
    const logs: string[] = [];
    // Under coreutils `timeout`, so nghttpx cannot outlive a test run that is killed.
    nghttpx = spawn(
      'timeout',
      [
        '120',
        'nghttpx',
        '--conf=/dev/null',
        '--http2-proxy',
        `--frontend=127.0.0.1,${port}`,
        `--backend=127.0.0.1,${backendPort}`,
        '--workers=1',
        '--tls-min-proto-version=TLSv1.3',
        '--verify-client',
        `--verify-client-cacert=${ca.certFile}`,
        '--no-ocsp',
        '--errorlog-file=/dev/stderr',
        '--accesslog-file=/dev/stderr',
        proxyCert.keyFile,
        proxyCert.certFile,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    nghttpx.stderr?.on('data', (c: Buffer) => logs.push(c.toString()));
    for (let i = 0; ; i += 1) {
      const up = await new Promise<boolean>((resolve) => {
        const probe = net.connect({ host: '127.0.0.1', port }, () => resolve(true));
        probe.on('error', () => resolve(false));
        probe.on('connect', () => probe.destroy());
      });
      if (up) break;
      assert.ok(i < 100 && nghttpx.exitCode === null, `nghttpx did not start: ${logs.join('')}`);
      await sleep(50);
    }

    // nghttpx 1.52 does not pass a client's END_STREAM on to its backend as a FIN (it closes the
    // tunnel when both ends are done), so the target ends first here: it echoes 200 kB, then
    // sends FIN, which must reach us as END_STREAM; our end() then closes the stream.
    const size = 200_000;
    target = await startEcho((s) => {
      let seen = 0;
      s.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        s.write(chunk);
        if (seen >= size) s.end();
      });
      return true;
    });
    const client = makeClient();
    const node = { name: 'nghttpx-node', ip: '127.0.0.1', port };
    const tunnel = await client.connect({
      sourceIdentity: CLIENT_ID,
      node,
      target: { ip: '127.0.0.1', port: target.port },
      forwardedFor: '10.244.1.7',
    });
    const got = readAll(tunnel);
    tunnel.write(Buffer.alloc(size, 'z'));
    const answer = await got;
    assert.equal(answer.error, undefined, logs.join(''));
    assert.equal(answer.data.length, size);
    assert.equal(answer.ended, true);
    tunnel.end();
    await closed(tunnel);
    assert.deepEqual(connects, [`127.0.0.1:${target.port}`]);

    // nghttpx refuses a client certificate from another CA at the TLS layer.
    const stranger = otherCa.issue('stranger-nghttpx', { uris: [CLIENT_ID] });
    const refusedClient = makeClient({}, stranger);
    const err = await rejection(refusedClient.connect({ sourceIdentity: CLIENT_ID, node, target: toEcho() }));
    assert.equal(err.code, 'NM_ERR_HBONE_TLS', err.message);
    await refusedClient.close();
    await client.close();
  });
});
