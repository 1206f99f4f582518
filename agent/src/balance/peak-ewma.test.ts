import { it } from 'node:test';
import assert from 'node:assert/strict';
import { DECAY_MS, DEFAULT_RTT_MS, PeakEwma } from './peak-ewma.js';

it('peak EWMA starts at the default RTT and takes a slower observation at once', () => {
  const ewma = new PeakEwma(0);
  assert.equal(ewma.estimateMs(0), DEFAULT_RTT_MS);
  ewma.observe(500, 0);
  assert.equal(ewma.estimateMs(0), 500);
});

it('peak EWMA decays with a 10 s time constant and blends faster observations by elapsed time', () => {
  const ewma = new PeakEwma(0);
  ewma.observe(400, 0);
  assert.ok(Math.abs(ewma.estimateMs(DECAY_MS) - 400 / Math.E) < 1e-9);
  ewma.observe(10, DECAY_MS);
  const expected = 400 / Math.E + 10 * (1 - 1 / Math.E);
  assert.ok(Math.abs(ewma.estimateMs(DECAY_MS) - expected) < 1e-9);
  ewma.observe(10, DECAY_MS);
  assert.ok(Math.abs(ewma.estimateMs(DECAY_MS) - expected) < 1e-9, 'no time passed: no weight');
});
