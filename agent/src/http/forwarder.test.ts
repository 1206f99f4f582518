import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { ServiceDestination } from '../state/mesh-index.js';
import { Cluster } from './cluster.js';
import { forward } from './forwarder.js';
import { RequestBody } from './request-body.js';
import type { UpstreamPool } from './upstream-pool.js';

/** A pool whose every attempt is answered `status` by the endpoint, counting the attempts. */
function answering(status: number): { pool: UpstreamPool; attempts: () => number } {
  let attempts = 0;
  const pool = {
    send: () => {
      attempts += 1;
      const body = Readable.from([Buffer.from('from the app')]);
      return { response: Promise.resolve({ status, headers: { 'x-app': 'yes' }, body, endStream: false, trailers: () => ({}) }), cancel: () => {} };
    },
  } as unknown as UpstreamPool;
  return { pool, attempts: () => attempts };
}

function cluster(maxRetries: number): Cluster {
  const c = new Cluster('shop/web:80');
  const endpoints = ['10.0.0.1', '10.0.0.2'].map((ip) => ({ ip, port: 8080, nodeName: 'n1', pod: { namespace: 'shop', name: ip } }));
  c.update({ endpoints } as unknown as ServiceDestination, { connectionPool: { maxRetries } });
  return c;
}

it('a retry the budget refuses gives the client the upstream answer, not a local 503 (Envoy retry overflow)', async () => {
  const c = cluster(1);
  const held = c.retry();
  assert.ok(held, 'the one retry the DestinationRule allows is taken');
  const { pool, attempts } = answering(500);
  const result = await forward(pool, {
    cluster: c,
    protocol: 'h1',
    request: { method: 'GET', path: '/', authority: 'web', headers: {}, body: new RequestBody(Readable.from([]), true) },
    retry: { retries: 3, codes: new Set([500]), backoffBaseMs: 1, asked: true },
    connect: () => ({ key: 'k', dial: () => Promise.reject(new Error('unused')) }),
    signal: new AbortController().signal,
  });
  assert.ok('response' in result, JSON.stringify(result));
  assert.equal(result.response.status, 500);
  assert.equal(result.response.headers['x-app'], 'yes');
  assert.equal(attempts(), 1);
  result.done();
  held();
  // With room in the budget the same request is retried up to its limit.
  const again = answering(500);
  const retried = await forward(again.pool, {
    cluster: c,
    protocol: 'h1',
    request: { method: 'GET', path: '/', authority: 'web', headers: {}, body: new RequestBody(Readable.from([]), true) },
    retry: { retries: 3, codes: new Set([500]), backoffBaseMs: 1, asked: true },
    connect: () => ({ key: 'k', dial: () => Promise.reject(new Error('unused')) }),
    signal: new AbortController().signal,
  });
  assert.equal(again.attempts(), 4);
  assert.ok('response' in retried && retried.response.status === 500);
  c.close();
});
