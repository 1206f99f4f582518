import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { RequestBody } from './request-body.js';
import { UpstreamPool, type Dial, type PoolLimits } from './upstream-pool.js';
import { UpstreamError, type UpstreamRequest, type UpstreamResponse } from './upstream.js';

const LIMITS: PoolLimits = { idleTimeoutMs: 10_000 };
const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** Things to tear down after each test. */
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** A dialer to 127.0.0.1:port that counts its dials and rejects as the Dial contract says. */
function dialer(port: number): { dial: Dial; count(): number } {
  let count = 0;
  const dial: Dial = () =>
    new Promise((resolve, reject) => {
      count += 1;
      const socket = net.connect(port, '127.0.0.1');
      const fail = (err: Error) => reject(new UpstreamError('connect', `dial 127.0.0.1:${port}: ${err.message}`, 'UF'));
      socket.once('error', fail);
      socket.once('connect', () => {
        socket.off('error', fail);
        resolve(socket);
      });
    });
  return { dial, count: () => count };
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** An HTTP/1.1 server; `sockets` holds the connections it accepted. */
async function h1Server(handler: http.RequestListener): Promise<{ port: number; sockets: net.Socket[] }> {
  const server = http.createServer({ keepAliveTimeout: 10_000 }, handler);
  const sockets: net.Socket[] = [];
  server.on('connection', (s: net.Socket) => sockets.push(s));
  const port = await listen(server);
  cleanups.push(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return { port, sockets };
}

/** An h2c server; `sessions` holds the sessions it accepted. */
async function h2Server(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void): Promise<{ port: number; sessions: http2.ServerHttp2Session[] }> {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s: http2.ServerHttp2Session) => sessions.push(s));
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    // A stream the handler resets errors on this side too.
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  const port = await listen(server);
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { port, sessions };
}

function newPool(): UpstreamPool {
  const pool = new UpstreamPool();
  cleanups.push(() => pool.close());
  return pool;
}

function request(over: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { method: 'GET', path: '/', authority: 'web.shop', headers: {}, body: RequestBody.of(Buffer.alloc(0)), ...over };
}

async function text(response: UpstreamResponse): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of response.body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

/** Node's HTTP/1.1 client returns a socket to its pool on the tick after the response ends. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Waits for `done()` to hold, failing after `ms`. */
async function eventually(what: string, done: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server);
  server.close();
  await once(server, 'close');
  return port;
}

async function rejection(p: Promise<unknown>): Promise<UpstreamError> {
  const err = await p.then(
    () => assert.fail('expected the attempt to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UpstreamError, `expected an UpstreamError, got ${String(err)}`);
  return err;
}

/** An h2 handler answering 200 with the request path. */
const h2Echo = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
  stream.respond({ ':status': 200 });
  stream.end(String(headers[':path']));
};

describe('UpstreamPool HTTP/1.1', () => {
  it('sends method, path, authority and headers; reuses one keep-alive connection for sequential requests', async () => {
    const seen: string[] = [];
    const { port, sockets } = await h1Server((req, res) => {
      seen.push(`${req.method} ${req.url} host=${req.headers.host} x-a=${req.headers['x-a']}`);
      res.end(`hello ${req.url}`);
    });
    const pool = newPool();
    const d = dialer(port);
    for (const path of ['/a', '/b', '/c']) {
      const response = await pool.send('h1', 'client|web-1', d.dial, request({ path, headers: { 'x-a': '1' } }), LIMITS).response;
      assert.equal(response.status, 200);
      assert.equal(await text(response), `hello ${path}`);
      await nextTurn();
    }
    assert.deepEqual(seen, ['GET /a host=web.shop x-a=1', 'GET /b host=web.shop x-a=1', 'GET /c host=web.shop x-a=1']);
    assert.equal(d.count(), 1);
    assert.equal(sockets.length, 1);
    assert.deepEqual(pool.size, { h1: 1, h2: 0 });
  });

  it('never hands bytes past the end of an answer to the next request: that connection is not reused', async () => {
    let n = 0;
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.on('data', () => {
        n += 1;
        // The first answer comes with a stale second one behind it in the same write.
        socket.write(n === 1 ? 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale' : `HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh`);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const pool = newPool();
    const d = dialer((server.address() as net.AddressInfo).port);
    const first = await pool.send('h1', 'client|web-1', d.dial, request({ path: '/1' }), LIMITS).response;
    assert.equal(await text(first), 'ok');
    await nextTurn();
    const second = await pool.send('h1', 'client|web-1', d.dial, request({ path: '/2' }), LIMITS).response;
    assert.equal(await text(second), 'fresh');
    assert.equal(d.count(), 2, 'the second request had a connection of its own');
    pool.close();
    server.close();
  });

  it('does not reuse a connection the upstream closed while idle, even over a half-open tunnel', { timeout: 5000 }, async () => {
    // Through an HBONE tunnel the pod's FIN arrives as the end of the stream's readable side,
    // and nothing answers what is written after it: a server that half-closes after its first
    // answer and then stays silent shows the same.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.once('data', (chunk: Buffer) => {
        const path = chunk.toString().split(' ')[1] ?? '';
        const body = `hello ${path}`;
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: keep-alive\r\n\r\n${body}`);
        setTimeout(() => socket.end(), 100);
      });
    });
    const port = await listen(server);
    cleanups.push(() => void server.close());
    let dials = 0;
    const dial: Dial = async () => {
      dials += 1;
      const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await once(socket, 'connect');
      return socket;
    };
    const pool = newPool();
    for (const path of ['/a', '/b']) {
      const response = await pool.send('h1', 'client|web-1', dial, request({ path }), LIMITS).response;
      assert.equal(await text(response), `hello ${path}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(dials, 2, 'a new connection after the idle one was ended by the server');
  });

  it('streams a request body and returns response headers without hop-by-hop ones', async () => {
    const { port } = await h1Server((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(201, { 'x-got': Buffer.concat(chunks).toString(), connection: 'keep-alive, x-hop', 'x-hop': 'h' });
        res.end();
      });
    });
    const response = await newPool().send('h1', 'k', dialer(port).dial, request({ method: 'POST', body: RequestBody.of(Buffer.from('payload')) }), LIMITS).response;
    assert.equal(response.status, 201);
    assert.equal(response.headers['x-got'], 'payload');
    assert.equal(response.headers.connection, undefined);
    assert.equal(response.headers['x-hop'], undefined);
    await text(response);
  });

  it('dials for every request when maxRequestsPerConnection is 1', async () => {
    const { port, sockets } = await h1Server((_req, res) => res.end('ok'));
    const pool = newPool();
    const d = dialer(port);
    for (let i = 0; i < 3; i += 1) {
      const response = await pool.send('h1', 'k', d.dial, request(), { ...LIMITS, maxRequestsPerConnection: 1 }).response;
      assert.equal(await text(response), 'ok');
      await nextTurn();
    }
    assert.equal(d.count(), 3);
    assert.equal(sockets.length, 3);
  });

  it('keeps separate connections per pool key', async () => {
    const { port } = await h1Server((_req, res) => res.end('ok'));
    const pool = newPool();
    const d = dialer(port);
    for (const key of ['client-a|web-1', 'client-b|web-1']) {
      await text(await pool.send('h1', key, d.dial, request(), LIMITS).response);
      await nextTurn();
    }
    assert.equal(d.count(), 2);
  });

  it('fails with kind connect when the dial fails', async () => {
    const d = dialer(await closedPort());
    const err = await rejection(newPool().send('h1', 'k', d.dial, request(), LIMITS).response);
    assert.equal(err.kind, 'connect');
    assert.match(err.message, /ECONNREFUSED/);
  });

  it('fails with kind reset when the server drops the connection before answering', async () => {
    const { port } = await h1Server((req) => req.socket.destroy());
    const err = await rejection(newPool().send('h1', 'k', dialer(port).dial, request(), LIMITS).response);
    assert.equal(err.kind, 'reset');
    assert.equal(err.flag, 'UR');
  });

  it('delivers trailers once the body has ended', async () => {
    const { port } = await h1Server((_req, res) => {
      res.writeHead(200, { trailer: 'x-checksum' });
      res.write('data');
      res.addTrailers({ 'x-checksum': 'abc' });
      res.end();
    });
    const response = await newPool().send('h1', 'k', dialer(port).dial, request(), LIMITS).response;
    assert.equal(await text(response), 'data');
    assert.deepEqual({ ...response.trailers() }, { 'x-checksum': 'abc' });
  });

  it('closes a connection left idle for idleTimeoutMs', async () => {
    const { port, sockets } = await h1Server((_req, res) => res.end('ok'));
    const pool = newPool();
    await text(await pool.send('h1', 'k', dialer(port).dial, request(), { idleTimeoutMs: 30 }).response);
    await eventually('idle connection closed', () => (sockets[0] as net.Socket).destroyed && pool.size.h1 === 0);
  });

  it('after retireAll dials anew, lets the request in flight finish and closes its connection', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const { port, sockets } = await h1Server((req, res) => {
      if (req.url === '/slow') void held.then(() => res.end('slow done'));
      else res.end('fast');
    });
    const pool = newPool();
    const d = dialer(port);
    await text(await pool.send('h1', 'k', d.dial, request({ path: '/warm' }), LIMITS).response);
    await nextTurn();
    const slow = pool.send('h1', 'k', d.dial, request({ path: '/slow' }), LIMITS).response;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(d.count(), 1, 'the slow request rides the warm connection');

    pool.retireAll();
    assert.equal(await text(await pool.send('h1', 'k', d.dial, request({ path: '/after' }), LIMITS).response), 'fast');
    assert.equal(d.count(), 2);

    release();
    assert.equal(await text(await slow), 'slow done');
    await eventually('the retired connection closed once free', () => (sockets[0] as net.Socket).destroyed);
  });
});

describe('UpstreamPool HTTP/2', () => {
  it('carries concurrent streams on one session', async () => {
    const { port, sessions } = await h2Server(h2Echo);
    const pool = newPool();
    const d = dialer(port);
    const responses = await Promise.all([1, 2, 3, 4, 5].map((i) => pool.send('h2', 'k', d.dial, request({ path: `/${i}` }), LIMITS).response));
    assert.deepEqual(await Promise.all(responses.map(text)), ['/1', '/2', '/3', '/4', '/5']);
    assert.equal(d.count(), 1);
    assert.equal(sessions.length, 1);
    assert.deepEqual(pool.size, { h1: 0, h2: 1 });
  });

  it('sends pseudo-headers, headers and body; reports a headers-only answer as endStream', async () => {
    const { port } = await h2Server((stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const got = `${headers[':method']} ${headers[':authority']}${headers[':path']} x-a=${headers['x-a']} body=${Buffer.concat(chunks).toString()}`;
        stream.respond({ ':status': 204, 'x-got': got }, { endStream: true });
      });
    });
    const req = request({ method: 'POST', path: '/p?q=1', headers: { 'x-a': '1' }, body: RequestBody.of(Buffer.from('payload')) });
    const response = await newPool().send('h2', 'k', dialer(port).dial, req, LIMITS).response;
    assert.equal(response.status, 204);
    assert.equal(response.endStream, true);
    assert.equal(response.headers['x-got'], 'POST web.shop/p?q=1 x-a=1 body=payload');
    assert.equal(response.headers[':status'], undefined, 'pseudo-headers are not response headers');
  });

  it('opens a new session after maxRequestsPerConnection requests, and every request is served', async () => {
    const { port, sessions } = await h2Server(h2Echo);
    const pool = newPool();
    const d = dialer(port);
    const limits = { ...LIMITS, maxRequestsPerConnection: 2 };
    for (const path of ['/1', '/2', '/3', '/4']) {
      const response = await pool.send('h2', 'k', d.dial, request({ path }), limits).response;
      assert.equal(await text(response), path);
    }
    assert.equal(d.count(), 2);
    assert.equal(sessions.length, 2);
  });

  it('serves requests with maxRequestsPerConnection 1, one session each', async () => {
    const { port } = await h2Server(h2Echo);
    const pool = newPool();
    const d = dialer(port);
    for (const path of ['/1', '/2']) {
      assert.equal(await text(await pool.send('h2', 'k', d.dial, request({ path }), { ...LIMITS, maxRequestsPerConnection: 1 }).response), path);
    }
    assert.equal(d.count(), 2);
  });

  it('fails with kind connect when the dial fails, and dials again for the next request', async () => {
    const d = dialer(await closedPort());
    const pool = newPool();
    assert.equal((await rejection(pool.send('h2', 'k', d.dial, request(), LIMITS).response)).kind, 'connect');
    assert.equal((await rejection(pool.send('h2', 'k', d.dial, request(), LIMITS).response)).kind, 'connect');
    assert.equal(d.count(), 2, 'a failed session is not kept');
  });

  it('fails with kind reset when the server resets the stream before answering', async () => {
    const { port } = await h2Server((stream) => stream.close(NGHTTP2_INTERNAL_ERROR));
    const err = await rejection(newPool().send('h2', 'k', dialer(port).dial, request(), LIMITS).response);
    assert.equal(err.kind, 'reset');
    assert.match(err.message, /code 2/);
  });

  it('fails with kind refused-stream when the server refuses the stream', async () => {
    const { port } = await h2Server((stream) => stream.close(NGHTTP2_REFUSED_STREAM));
    const err = await rejection(newPool().send('h2', 'k', dialer(port).dial, request(), LIMITS).response);
    assert.equal(err.kind, 'refused-stream');
  });

  it('delivers trailers once the body has ended', async () => {
    const { port } = await h2Server((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }));
      stream.end('frame');
    });
    const response = await newPool().send('h2', 'k', dialer(port).dial, request(), LIMITS).response;
    assert.equal(response.endStream, false);
    assert.equal(await text(response), 'frame');
    assert.deepEqual({ ...response.trailers() }, { 'grpc-status': '0', 'grpc-message': 'fine' });
  });

  it('closes a session left idle for idleTimeoutMs', async () => {
    const { port, sessions } = await h2Server(h2Echo);
    const pool = newPool();
    await text(await pool.send('h2', 'k', dialer(port).dial, request(), { idleTimeoutMs: 30 }).response);
    await eventually('idle session closed', () => (sessions[0] as http2.ServerHttp2Session).destroyed && pool.size.h2 === 0);
  });

  it('still closes an idle session after a request was cancelled while the session was dialing', async () => {
    const { port, sessions } = await h2Server(h2Echo);
    const pool = newPool();
    const d = dialer(port);
    let connected!: () => void;
    const slow = new Promise<void>((resolve) => (connected = resolve));
    const slowDial: Dial = () => slow.then(d.dial);
    const cancelled = pool.send('h2', 'k', slowDial, request(), { idleTimeoutMs: 30 });
    cancelled.cancel();
    connected();
    assert.equal((await rejection(cancelled.response)).kind, 'timeout');
    assert.equal(await text(await pool.send('h2', 'k', slowDial, request({ path: '/next' }), { idleTimeoutMs: 30 }).response), '/next');
    assert.equal(d.count(), 1, 'both requests shared the session');
    await eventually('idle session closed', () => (sessions[0] as http2.ServerHttp2Session).destroyed && pool.size.h2 === 0);
  });

  it('after retireAll dials anew and lets the stream in flight finish on the old session', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const { port, sessions } = await h2Server((stream, headers) => {
      stream.respond({ ':status': 200 });
      if (headers[':path'] === '/slow') void held.then(() => stream.end('slow done'));
      else stream.end('fast');
    });
    const pool = newPool();
    const d = dialer(port);
    const slow = await pool.send('h2', 'k', d.dial, request({ path: '/slow' }), LIMITS).response;
    pool.retireAll();
    assert.equal(await text(await pool.send('h2', 'k', d.dial, request({ path: '/after' }), LIMITS).response), 'fast');
    assert.equal(d.count(), 2);
    release();
    assert.equal(await text(slow), 'slow done');
    await eventually('the retired session closed once idle', () => (sessions[0] as http2.ServerHttp2Session).destroyed);
  });
});
