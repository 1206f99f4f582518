import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renewAtHalfLife } from './serving-certificate.js';

describe('renewAtHalfLife', () => {
  it('renews at half of each lifetime, from the date each renewal returns, until stopped', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    const calls: number[] = [];
    const renewal = renewAtHalfLife(new Date(200_000), () => (calls.push(Date.now()), new Date(Date.now() + 400_000)), 1000);
    t.mock.timers.tick(99_999);
    assert.deepEqual(calls, []);
    t.mock.timers.tick(1);
    assert.deepEqual(calls, [100_000], 'half of the first lifetime');
    t.mock.timers.tick(200_000);
    assert.deepEqual(calls, [100_000, 300_000], 'half of the renewed lifetime');
    renewal.stop();
    t.mock.timers.tick(1_000_000);
    assert.equal(calls.length, 2, 'no renewal after stop');
  });

  it('never renews sooner than the floor, even for a certificate already past its end', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 10_000 });
    const calls: number[] = [];
    const renewal = renewAtHalfLife(new Date(0), () => (calls.push(Date.now()), new Date(0)), 60_000);
    t.mock.timers.tick(59_999);
    assert.deepEqual(calls, []);
    t.mock.timers.tick(1);
    assert.deepEqual(calls, [70_000]);
    t.mock.timers.tick(60_000);
    assert.deepEqual(calls, [70_000, 130_000]);
    renewal.stop();
  });
});
