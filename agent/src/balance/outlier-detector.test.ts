import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { OutlierDetectionSettings } from '../state/model.js';
import { OutlierDetector } from './outlier-detector.js';

const settings = (over: Partial<OutlierDetectionSettings> = {}): OutlierDetectionSettings => ({
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 100,
  ...over,
});

const detector = (n: number, over: Partial<OutlierDetectionSettings> = {}) => {
  const d = new OutlierDetector(settings(over));
  d.sync(new Set(Array.from({ length: n }, (_, i) => `e${i}`)));
  return d;
};

const fail = (d: OutlierDetector, key: string, times: number, result: { status?: number; failure?: 'connect' } = { status: 500 }, now = 0) => {
  for (let i = 0; i < times; i++) d.report(key, result, now);
};

it('ejects at the consecutive 5xx threshold; a success in between resets the count', () => {
  const d = detector(2);
  fail(d, 'e0', 4);
  d.report('e0', { status: 200 }, 0);
  fail(d, 'e0', 4);
  assert.equal(d.isEjected('e0'), false);
  d.report('e0', { failure: 'connect' }, 0);
  assert.equal(d.isEjected('e0'), true, 'a connect failure counts as a 5xx');
  assert.deepEqual(d.ejected(), [{ endpoint: 'e0', untilMs: 30_000, ejections: 1 }]);
  assert.equal(d.isEjected('e1'), false);
});

it('counts gateway errors (502/503/504, failures) separately; another 5xx resets them', () => {
  const d = detector(2, { consecutive5xxErrors: 0, consecutiveGatewayErrors: 3 });
  fail(d, 'e0', 2, { status: 503 });
  d.report('e0', { status: 500 }, 0);
  fail(d, 'e0', 2, { status: 502 });
  assert.equal(d.isEjected('e0'), false);
  d.report('e0', { failure: 'connect' }, 0);
  assert.equal(d.isEjected('e0'), true);
  fail(d, 'e1', 20, { status: 500 });
  assert.equal(d.isEjected('e1'), false, 'consecutive5xxErrors 0 disables that detector');
});

it('keeps the ejected share within maxEjectionPercent, but one can always be ejected', () => {
  const d = detector(10, { maxEjectionPercent: 20 });
  for (let i = 0; i < 10; i++) fail(d, `e${i}`, 5);
  assert.equal(d.ejectedCount, 2);
  const small = detector(3, { maxEjectionPercent: 10 });
  for (let i = 0; i < 3; i++) fail(small, `e${i}`, 5);
  assert.equal(small.ejectedCount, 1);
});

it('an endpoint refused by the cap is ejected on its next error once there is room', () => {
  const d = detector(3, { maxEjectionPercent: 10 });
  fail(d, 'e0', 5);
  fail(d, 'e1', 5);
  assert.equal(d.isEjected('e1'), false);
  d.sweep(30_000);
  assert.equal(d.isEjected('e0'), false);
  fail(d, 'e1', 1, undefined, 30_000);
  assert.equal(d.isEjected('e1'), true);
});

it('restores at the first sweep after the ejection time, with fresh counters', () => {
  const d = detector(2);
  fail(d, 'e0', 5);
  d.sweep(10_000);
  d.sweep(20_000);
  d.sweep(29_999);
  assert.equal(d.isEjected('e0'), true);
  d.sweep(30_000);
  assert.equal(d.isEjected('e0'), false);
  fail(d, 'e0', 4, undefined, 30_000);
  assert.equal(d.isEjected('e0'), false, 'errors before the ejection do not count again');
});

it('ejects for n × base on the n-th ejection in a row, and forgives one step per healthy interval', () => {
  const d = detector(2);
  let now = 0;
  const durations: number[] = [];
  for (let n = 1; n <= 3; n++) {
    fail(d, 'e0', 5, undefined, now);
    const { untilMs, ejections } = d.ejected()[0]!;
    assert.equal(ejections, n);
    durations.push(untilMs - now);
    now = untilMs;
    d.sweep(now);
  }
  assert.deepEqual(durations, [30_000, 60_000, 90_000]);
  d.sweep(now + 10_000);
  d.sweep(now + 20_000);
  now += 20_000;
  fail(d, 'e0', 5, undefined, now);
  assert.equal(d.ejected()[0]!.untilMs - now, 60_000, 'two healthy sweeps took 3 down to 1; this ejection makes 2');
});

it('caps an ejection at 300 s (Envoy max_ejection_time)', () => {
  const d = detector(2, { baseEjectionTimeMs: 100_000 });
  let now = 0;
  for (let i = 0; i < 5; i++) {
    fail(d, 'e0', 5, undefined, now);
    now = d.ejected()[0]!.untilMs;
    d.sweep(now);
  }
  fail(d, 'e0', 5, undefined, now);
  assert.equal(d.ejected()[0]!.untilMs - now, 300_000);
});

it('sync keeps records of endpoints that stay and forgets removed ones', () => {
  const d = detector(3);
  fail(d, 'e0', 5);
  fail(d, 'e1', 4);
  d.sync(new Set(['e1', 'e2', 'e3']));
  assert.equal(d.ejectedCount, 0);
  fail(d, 'e1', 1);
  assert.equal(d.isEjected('e1'), true, 'its 4 earlier errors were kept');
  d.sync(new Set(['e0', 'e1']));
  assert.equal(d.isEjected('e0'), false, 're-added: a fresh record');
});
