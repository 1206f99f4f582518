import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { percentiles, RollingWindow } from './rolling-window.js';

const T0 = 1_700_000_000_000; // a whole second

describe('RollingWindow', () => {
  it('counts requests and successes of the last N seconds, and forgets older ones', () => {
    const w = new RollingWindow(10, 64, T0);
    for (let i = 0; i < 50; i++) w.add(T0 + i * 20, 4, true);
    for (let i = 0; i < 10; i++) w.add(T0 + 1000 + i * 20, 8, false);
    const s = w.stats(T0 + 2000);
    assert.equal(s.requests, 60);
    assert.equal(s.successRate, 0.8333);
    // Second T0 leaves the window 10 s later; the second after it one second after that.
    assert.equal(w.stats(T0 + 10_000).requests, 10);
    assert.equal(w.stats(T0 + 11_000).requests, 0);
    assert.equal(w.stats(T0 + 11_000).successRate, null);
    assert.equal(w.stats(T0 + 11_000).latencyMs, null);
    assert.equal(w.idle(T0 + 10_999), false);
    assert.equal(w.idle(T0 + 11_000), true);
  });

  it('divides by the window once full, by the time since the first request before, never by less than 1 s', () => {
    const w = new RollingWindow(10, 64, T0);
    w.add(T0, 1, true);
    assert.equal(w.stats(T0 + 100).rps, 1, 'one request is 1 rps, not 10');
    for (let i = 1; i < 40; i++) w.add(T0 + i * 50, 1, true);
    assert.equal(w.stats(T0 + 2000).rps, 20, '40 requests over 2 s');
    assert.equal(w.stats(T0 + 9_500).rps, Math.round((40 / 9.5) * 100) / 100);
    // Full window: [T0+10s-9s, T0+10.5s) holds nothing of the first two seconds any more.
    w.add(T0 + 10_200, 1, true);
    assert.equal(w.stats(T0 + 10_500).requests, 21);
    assert.equal(w.stats(T0 + 10_500).rps, Math.round((21 / 9.5) * 100) / 100);
  });

  it('reuses a bucket for a new second and drops a record older than the window', () => {
    const w = new RollingWindow(3, 8, T0);
    w.add(T0 + 3000, 1, true);
    w.add(T0, 1, false); // same bucket, older second: dropped
    const s = w.stats(T0 + 3000);
    assert.deepEqual([s.requests, s.successRate], [1, 1]);
  });

  it('takes percentiles over the latest samples only: memory is fixed whatever the rate', () => {
    const w = new RollingWindow(10, 100, T0);
    for (let i = 0; i < 100; i++) w.add(T0 + i, 1000, true);
    for (let i = 1; i <= 100; i++) w.add(T0 + 100 + i, i, true);
    const s = w.stats(T0 + 500);
    assert.equal(s.requests, 200);
    assert.deepEqual(s.latencyMs, { p50: 50, p95: 95, p99: 99 });
  });
});

describe('percentiles', () => {
  it('are nearest-rank', () => {
    assert.deepEqual(percentiles([7]), { p50: 7, p95: 7, p99: 7 });
    assert.deepEqual(percentiles([4, 1, 3, 2]), { p50: 2, p95: 4, p99: 4 });
    const thousand = Array.from({ length: 1000 }, (_, i) => 1000 - i);
    assert.deepEqual(percentiles(thousand), { p50: 500, p95: 950, p99: 990 });
    assert.deepEqual(percentiles([0.123456, 0.2]), { p50: 0.12, p95: 0.2, p99: 0.2 });
  });
});
