import { it } from 'node:test';
import assert from 'node:assert/strict';
import { retryBackoffMs } from './backoff.js';

const almostOne = () => 0.999999;

it('backoff doubles per retry from 25 ms up to 10 × base, fully jittered from 0', () => {
  const highest = [1, 2, 3, 4, 5, 6, 50].map((n) => retryBackoffMs(n, undefined, undefined, almostOne));
  assert.deepEqual(highest, [24, 49, 99, 199, 249, 249, 249]);
  assert.equal(retryBackoffMs(3, 25, 250, () => 0), 0);
  assert.equal(retryBackoffMs(2, 25, 250, () => 0.5), 25);
});

it('backoff derives its cap from a custom base and honours a custom cap', () => {
  assert.equal(retryBackoffMs(10, 100, undefined, almostOne), 999);
  assert.equal(retryBackoffMs(3, 100, 150, almostOne), 149);
  assert.equal(retryBackoffMs(2000, 100, 150, almostOne), 149);
});

it('backoff stays within [0, ceiling) for the real random source', () => {
  for (let i = 0; i < 1000; i++) {
    const ms = retryBackoffMs(3);
    assert.ok(Number.isInteger(ms) && ms >= 0 && ms < 100, String(ms));
  }
});
