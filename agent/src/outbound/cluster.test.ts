import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceDestination } from '../state/mesh-index.js';
import type { ConnectionPoolSettings } from '../state/model.js';
import { indexFromYaml, nodeAndShop } from '../testing/mesh.js';
import { Cluster, type Admission } from './cluster.js';

const YAML = `${nodeAndShop('n1', '10.0.0.1')}
---
apiVersion: v1
kind: Pod
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec: { nodeName: n1 }
status: { podIP: 10.1.0.2 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { clusterIP: 10.96.0.10, selector: { app: web }, ports: [{ port: 80, targetPort: 8080 }] }`;

function web(): ServiceDestination {
  const dest = indexFromYaml(YAML, 'n1').serviceDestination('shop', 'web', 80);
  assert.ok(dest);
  return dest;
}

function cluster(connectionPool: ConnectionPoolSettings): Cluster {
  const c = new Cluster('shop/web:80');
  c.update(web(), { connectionPool });
  return c;
}

const live = (): AbortSignal => new AbortController().signal;

function granted(a: Admission): { release(): void } {
  assert.ok('release' in a, `expected a slot, got ${JSON.stringify(a)}`);
  return a;
}

function overflow(a: Admission | Promise<Admission>): string {
  assert.ok(!(a instanceof Promise), 'expected an immediate answer, the request was queued');
  assert.ok('overflow' in a, 'expected overflow, got a slot');
  return a.overflow;
}

/** Whether `p` has settled after the queued callbacks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('Cluster', () => {
  it('serves the endpoints of its destination and the pool limits of its policy', () => {
    const c = cluster({ maxRequestsPerConnection: 1, idleTimeoutMs: 5000 });
    assert.deepEqual([c.endpoints.pick()?.ip, c.endpoints.pick()?.port], ['10.1.0.2', 8080]);
    assert.deepEqual(c.limits, { idleTimeoutMs: 5000, maxRequestsPerConnection: 1 });
    assert.deepEqual(cluster({}).limits, { idleTimeoutMs: 60_000 });
  });

  it('admits without limit when the DestinationRule sets none', async () => {
    const c = cluster({});
    for (let i = 0; i < 100; i += 1) granted(await c.admit(i % 2 ? 'h1' : 'h2', live()));
  });

  it('overflows past http2MaxRequests in flight, for either protocol, until a slot is released', () => {
    const c = cluster({ http2MaxRequests: 2 });
    const a = granted(c.admit('h2', live()) as Admission);
    granted(c.admit('h1', live()) as Admission);
    assert.equal(overflow(c.admit('h2', live())), 'max requests (2) in flight to shop/web:80');
    assert.equal(overflow(c.admit('h1', live())), 'max requests (2) in flight to shop/web:80');
    a.release();
    a.release();
    const b = granted(c.admit('h2', live()) as Admission);
    assert.match(overflow(c.admit('h2', live())), /max requests \(2\)/, 'a double release frees one slot only');
    b.release();
  });

  it('queues HTTP/1.1 requests past maxConnections up to http1MaxPendingRequests, then overflows at once', async () => {
    const c = cluster({ maxConnections: 1, http1MaxPendingRequests: 2 });
    const busy = granted(c.admit('h1', live()) as Admission);
    const first = c.admit('h1', live());
    const second = c.admit('h1', live());
    assert.ok(first instanceof Promise && second instanceof Promise);
    assert.equal(await settled(first), false, 'waits for the connection');
    assert.equal(overflow(c.admit('h1', live())), 'max pending requests (2) waiting for a connection to shop/web:80');
    granted(c.admit('h2', live()) as Admission);

    busy.release();
    const next = granted(await first);
    assert.equal(await settled(second), false, 'one released connection lets one request go');
    next.release();
    granted(await second).release();
    granted(c.admit('h1', live()) as Admission);
  });

  it('drops a waiter whose client went away from the queue', async () => {
    const c = cluster({ maxConnections: 1, http1MaxPendingRequests: 1 });
    const busy = granted(c.admit('h1', live()) as Admission);
    const gone = new AbortController();
    const waiting = c.admit('h1', gone.signal);
    overflow(c.admit('h1', live()));
    gone.abort();
    assert.deepEqual(await waiting, { overflow: 'request abandoned while waiting for a connection' });
    const queued = c.admit('h1', live());
    assert.ok(queued instanceof Promise, 'the queue has room again');
    busy.release();
    granted(await queued);
  });

  it('bounds retries in flight by maxRetries; a released retry frees its place', () => {
    const c = cluster({ maxRetries: 1 });
    const retry = c.retry();
    assert.ok(retry);
    assert.equal(c.retry(), null);
    retry();
    assert.ok(c.retry());
  });

  it('allows Envoy’s minimum of 3 concurrent retries by default', () => {
    const c = cluster({});
    const held = [c.retry(), c.retry(), c.retry()];
    assert.ok(held.every((r) => r !== null));
    assert.equal(c.retry(), null);
  });

  it('takes a new maxRetries from an update', () => {
    const c = cluster({ maxRetries: 1 });
    assert.ok(c.retry());
    assert.equal(c.retry(), null);
    c.update(web(), { connectionPool: { maxRetries: 2 } });
    assert.ok(c.retry());
    assert.ok(c.retry());
    assert.equal(c.retry(), null);
  });
});
