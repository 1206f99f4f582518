import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { Endpoint } from '../state/mesh-index.js';
import type { OutlierDetectionSettings } from '../state/model.js';
import { EndpointSet } from './endpoint-set.js';

const ep = (n: number): Endpoint => ({
  kind: 'pod',
  pod: {
    namespace: 'shop',
    name: `web-${n}`,
    nodeName: 'node-a',
    serviceAccount: 'web',
    podIP: `10.1.0.${n}`,
    labels: { app: 'web' },
    ready: true,
    containerPorts: [],
  },
  ip: `10.1.0.${n}`,
  port: 8080,
  nodeName: 'node-a',
});
const key = (e: Endpoint | undefined) => (e ? `${e.ip}:${e.port}` : 'none');

const outlier = (over: Partial<OutlierDetectionSettings> = {}): OutlierDetectionSettings => ({
  consecutive5xxErrors: 2,
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 100,
  ...over,
});

const clock = () => {
  const c = { t: 0, now: () => c.t };
  return c;
};

/** A small deterministic PRNG (mulberry32). */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const fail = (set: EndpointSet, e: Endpoint, times: number) => {
  for (let i = 0; i < times; i++) set.begin(e).end({ status: 503 });
};

it('has nothing to pick without endpoints', () => {
  const set = new EndpointSet();
  assert.equal(set.pick(), undefined);
  set.update([], undefined, undefined);
  assert.equal(set.pick(), undefined);
});

it('counts requests in flight per destination, once per handle', () => {
  const set = new EndpointSet({ now: () => 0 });
  set.update([ep(1)], undefined, undefined);
  const a = set.begin(ep(1));
  const b = set.begin(ep(1));
  assert.equal(set.outstanding, 2);
  a.end({ status: 200 });
  a.end({ status: 200 });
  assert.equal(set.outstanding, 1);
  b.end({ failure: 'reset' });
  assert.equal(set.outstanding, 0);
});

it('by default (LEAST_REQUEST) prefers the endpoint with fewer requests in flight', () => {
  const set = new EndpointSet({ now: () => 0, random: seeded(1) });
  set.update([ep(1), ep(2)], undefined, undefined);
  const busy = [set.begin(ep(1)), set.begin(ep(1))];
  for (let i = 0; i < 20; i++) assert.equal(key(set.pick()), '10.1.0.2:8080');
  busy.forEach((h) => h.end({ status: 200 }));
});

it('moves traffic away from a slow endpoint at once and back as its estimate decays', () => {
  const c = clock();
  const set = new EndpointSet({ now: c.now, random: seeded(2) });
  set.update([ep(1), ep(2)], undefined, undefined);
  const slow = set.begin(ep(2));
  c.t = 1_000;
  slow.end({ status: 200 }); // 1 s: the peak replaces the 30 ms default at once
  let firstBack: number | undefined;
  while (c.t < 80_000 && firstBack === undefined) {
    const picked = set.pick()!;
    if (picked.ip === '10.1.0.2') firstBack = c.t;
    const h = set.begin(picked);
    c.t += 20;
    h.end({ status: 200 });
    c.t += 80;
  }
  // 1000 ms × e^(-t/10 s) falls under the other endpoint's ~20 ms after ~39 s.
  assert.ok(firstBack !== undefined && firstBack > 35_000 && firstBack < 45_000, String(firstBack));
});

it('the time a request spent opening a connection is not counted as the endpoint being slow', () => {
  const c = clock();
  const set = new EndpointSet({ now: c.now, random: seeded(4) });
  set.update([ep(1), ep(2)], undefined, undefined);
  for (const e of [ep(1), ep(2)]) {
    const h = set.begin(e);
    c.t += 5;
    h.end({ status: 200 });
  }
  // Endpoint 2's first request waited 400 ms for its connection, then answered in 5 ms.
  const first = set.begin(ep(2));
  c.t += 405;
  first.end({ status: 200, connectMs: 400 });
  const picks = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const e = set.pick()!;
    picks.add(key(e));
    const h = set.begin(e);
    c.t += 5;
    h.end({ status: 200 });
  }
  assert.deepEqual([...picks].sort(), ['10.1.0.1:8080', '10.1.0.2:8080']);
});

it('a request that fails fast makes its endpoint look slow, not fast', () => {
  const c = clock();
  const set = new EndpointSet({ now: c.now, random: seeded(3) });
  set.update([ep(1), ep(2)], undefined, undefined);
  const h = set.begin(ep(1));
  c.t += 1;
  h.end({ failure: 'connect' });
  for (let i = 0; i < 20; i++) assert.equal(key(set.pick()), '10.1.0.2:8080');
});

it('round robin follows endpoint order across picks', () => {
  const set = new EndpointSet({ random: () => 0 });
  set.update([ep(1), ep(2), ep(3)], { simple: 'ROUND_ROBIN' }, undefined);
  assert.deepEqual(
    Array.from({ length: 4 }, () => set.pick()!.ip),
    ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.1'],
  );
});

it('avoids endpoints the request already tried, unless none is left', () => {
  const set = new EndpointSet({ random: () => 0 });
  set.update([ep(1), ep(2)], { simple: 'RANDOM' }, undefined);
  assert.equal(key(set.pick({ avoid: new Set(['10.1.0.1:8080']) })), '10.1.0.2:8080');
  assert.equal(key(set.pick({ avoid: new Set(['10.1.0.1:8080', '10.1.0.2:8080']) })), '10.1.0.1:8080');
});

it('consistent hash keeps a key on its endpoint and retries it elsewhere', () => {
  const set = new EndpointSet({ random: () => 0 });
  set.update([ep(1), ep(2), ep(3)], { consistentHash: { httpHeaderName: 'x-user' } }, undefined);
  const home = key(set.pick({ hashKey: 'alice' }));
  for (let i = 0; i < 5; i++) assert.equal(key(set.pick({ hashKey: 'alice' })), home);
  const retry = key(set.pick({ hashKey: 'alice', avoid: new Set([home]) }));
  assert.notEqual(retry, home);
  set.update([ep(3), ep(2), ep(1), ep(4)], { consistentHash: { useSourceIp: true } }, undefined);
  const moved = key(set.pick({ hashKey: 'alice' }));
  assert.ok(moved === home || moved === '10.1.0.4:8080', 'only a new endpoint can take a key');
});

it('ejects at the threshold, restores at the first sweep after the ejection time', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const c = clock();
  const set = new EndpointSet({ now: c.now, random: seeded(4) });
  t.after(() => set.close());
  const advance = (ms: number) => {
    c.t += ms;
    t.mock.timers.tick(ms);
  };
  set.update([ep(1), ep(2)], { simple: 'ROUND_ROBIN' }, outlier());
  fail(set, ep(1), 1);
  assert.deepEqual(set.ejected(), []);
  fail(set, ep(1), 1);
  assert.deepEqual(set.ejected(), [{ endpoint: '10.1.0.1:8080', untilMs: 30_000, ejections: 1 }]);
  for (let i = 0; i < 4; i++) assert.equal(key(set.pick()), '10.1.0.2:8080');
  advance(5_000);
  fail(set, ep(1), 2); // in flight when it was ejected: not counted
  advance(24_999); // ejection over at 30 s, but the next sweep is at 30 s
  assert.equal(set.ejected().length, 1);
  advance(1);
  assert.deepEqual(set.ejected(), []);
  assert.deepEqual(new Set(Array.from({ length: 4 }, () => key(set.pick()))), new Set(['10.1.0.1:8080', '10.1.0.2:8080']));
  fail(set, ep(1), 2);
  assert.equal(set.ejected()[0]!.untilMs - c.t, 60_000, 'second ejection in a row: 2 × base');
});

it('in panic (every endpoint ejected) picks among all', () => {
  const set = new EndpointSet({ now: () => 0, random: () => 0 });
  set.update([ep(1), ep(2)], { simple: 'ROUND_ROBIN' }, outlier());
  fail(set, ep(1), 2);
  fail(set, ep(2), 2);
  assert.equal(set.ejected().length, 2);
  assert.deepEqual([set.pick()!.ip, set.pick()!.ip], ['10.1.0.1', '10.1.0.2']);
  set.close();
});

it('update keeps the state of endpoints that stay and drops removed ones', () => {
  const set = new EndpointSet({ now: () => 0, random: () => 0 });
  set.update([ep(1), ep(2), ep(3)], undefined, outlier());
  fail(set, ep(1), 2);
  fail(set, ep(3), 1);
  const inflight = set.begin(ep(2));
  set.update([ep(3), ep(2), ep(4)], { simple: 'LEAST_REQUEST' }, outlier({ consecutive5xxErrors: 2 }));
  assert.deepEqual(set.ejected(), [], 'the ejected endpoint left with its state');
  fail(set, ep(3), 1);
  assert.deepEqual(
    set.ejected().map((e) => e.endpoint),
    ['10.1.0.3:8080'],
    'the error before the update still counts',
  );
  // ep(2) still has a request in flight, so ep(4) (fresh, idle) wins every comparison.
  for (let i = 0; i < 5; i++) assert.equal(key(set.pick()), '10.1.0.4:8080');
  inflight.end({ status: 200 });
  assert.equal(set.outstanding, 0);
  set.update([ep(1), ep(4)], undefined, outlier());
  assert.deepEqual(set.ejected(), [], 'a returning endpoint starts healthy');
  set.update([ep(1), ep(4)], undefined, undefined);
  set.close();
});

it('drops ejections when outlier detection is removed', () => {
  const set = new EndpointSet({ now: () => 0 });
  set.update([ep(1), ep(2)], undefined, outlier());
  fail(set, ep(1), 2);
  assert.equal(set.ejected().length, 1);
  set.update([ep(1), ep(2)], undefined, undefined);
  assert.deepEqual(set.ejected(), []);
  fail(set, ep(1), 5);
  assert.deepEqual(set.ejected(), [], 'no detection without outlierDetection');
  set.close();
});

it('close stops the sweep timer, also against later updates', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const c = clock();
  const set = new EndpointSet({ now: c.now });
  set.update([ep(1), ep(2)], undefined, outlier());
  fail(set, ep(1), 2);
  set.close();
  set.update([ep(1), ep(2)], undefined, outlier({ intervalMs: 5_000 }));
  c.t += 120_000;
  t.mock.timers.tick(120_000);
  assert.equal(set.ejected().length, 1, 'no sweep ran to restore it');
});

it('a changed interval re-arms the sweep timer', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const c = clock();
  const set = new EndpointSet({ now: c.now });
  t.after(() => set.close());
  set.update([ep(1), ep(2)], undefined, outlier({ baseEjectionTimeMs: 1_000 }));
  fail(set, ep(1), 2);
  set.update([ep(1), ep(2)], undefined, outlier({ baseEjectionTimeMs: 1_000, intervalMs: 2_000 }));
  c.t += 2_000;
  t.mock.timers.tick(2_000);
  assert.deepEqual(set.ejected(), []);
});
