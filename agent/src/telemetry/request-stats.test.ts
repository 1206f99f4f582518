import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fakeRequest } from '../testing/request-record.js';
import { RequestStats, succeeded } from './request-stats.js';

const T0 = 1_700_000_000_000;

describe('RequestStats', () => {
  it('success is no 5xx, a response at all, and gRPC OK', () => {
    assert.equal(succeeded({ status: 200 }), true);
    assert.equal(succeeded({ status: 404 }), true);
    assert.equal(succeeded({ status: 503 }), false);
    assert.equal(succeeded({ status: 0 }), false);
    assert.equal(succeeded({ status: 200, grpcStatus: 0 }), true);
    assert.equal(succeeded({ status: 200, grpcStatus: 14 }), false);
  });

  it('50 × 200 and 10 × 503 to one service: 60 requests, 83.33 % success, latency of both', () => {
    const stats = new RequestStats();
    for (let i = 0; i < 50; i++) stats.request(fakeRequest({ startMs: T0 + i * 10, durationMs: 2 }));
    for (let i = 0; i < 10; i++) stats.request(fakeRequest({ startMs: T0 + 500 + i * 10, durationMs: 40, status: 503 }));
    const { services, windowSeconds } = stats.snapshot({}, T0 + 1000);
    assert.equal(windowSeconds, 10);
    assert.equal(services.length, 1);
    const web = services[0];
    assert.deepEqual(
      { reporter: web?.reporter, service: web?.service, namespace: web?.namespace, requests: web?.requests, successRate: web?.successRate, routes: web?.routes },
      { reporter: 'source', service: 'shop/web', namespace: 'shop', requests: 60, successRate: 0.8333, routes: [] },
    );
    assert.deepEqual(web?.latencyMs, { p50: 2, p95: 40, p99: 40 });
  });

  it('splits by reporter and by route, busiest first; a service without routes lists none', () => {
    const stats = new RequestStats();
    const api = { namespace: 'shop', name: 'api', port: 80 };
    for (let i = 0; i < 3; i++) stats.request(fakeRequest({ startMs: T0, destination: { service: api }, route: 'HTTPRoute shop/api' }));
    stats.request(fakeRequest({ startMs: T0, destination: { service: api } }));
    stats.request(fakeRequest({ startMs: T0, reporter: 'destination' }));
    stats.request(fakeRequest({ startMs: T0 }));
    stats.request(fakeRequest({ startMs: T0 }));
    const s = stats.snapshot({}, T0 + 100).services;
    assert.deepEqual(
      s.map((x) => [x.reporter, x.service, x.requests]),
      [
        ['source', 'shop/api', 4],
        ['source', 'shop/web', 2],
        ['destination', 'shop/web', 1],
      ],
    );
    assert.deepEqual(s[0]?.routes.map((r) => [r.route, r.requests]), [
      ['HTTPRoute shop/api', 3],
      [null, 1],
    ]);
    assert.deepEqual(s[1]?.routes, []);
  });

  it('filters by the service namespace; counts open outbound connections per service', () => {
    const open = [
      { direction: 'outbound' as const, service: 'shop/web' },
      { direction: 'outbound' as const, service: 'shop/web' },
      { direction: 'inbound' as const },
      { direction: 'outbound' as const },
    ];
    const stats = new RequestStats({ openConnections: () => open });
    stats.request(fakeRequest({ startMs: T0 }));
    stats.request(fakeRequest({ startMs: T0, reporter: 'destination' }));
    stats.request(fakeRequest({ startMs: T0, destination: { service: { namespace: 'bank', name: 'ledger', port: 80 } } }));
    assert.deepEqual(stats.snapshot({ namespace: 'shop' }, T0).services.map((x) => [x.reporter, x.service, x.openConnections]), [
      ['source', 'shop/web', 2],
      ['destination', 'shop/web', null],
    ]);
    assert.deepEqual(stats.snapshot({ namespace: 'bank' }, T0).services.map((x) => [x.service, x.openConnections]), [['bank/ledger', 0]]);
    assert.deepEqual(stats.snapshot({ namespace: 'none' }, T0).services, []);
  });

  it('forgets idle services and keeps at most 256 of them', () => {
    const stats = new RequestStats({ windowSeconds: 5 });
    stats.request(fakeRequest({ startMs: T0 }));
    assert.equal(stats.snapshot({}, T0 + 5000).services.length, 0);
    for (let i = 0; i < 300; i++) stats.request(fakeRequest({ startMs: T0 + 6000, destination: { service: { namespace: 'ns', name: `s${i}`, port: 80 } } }));
    const kept = stats.snapshot({}, T0 + 6000).services;
    assert.equal(kept.length, 256);
    assert.ok(kept.some((x) => x.service === 'ns/s299') && !kept.some((x) => x.service === 'ns/s0'), 'the oldest went first');
  });
});
