import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration } from './duration.js';

describe('durations', () => {
  it('reads Gateway API durations (GEP-2257) into milliseconds', () => {
    assert.equal(parseDuration('10s', 'gateway'), 10_000);
    assert.equal(parseDuration('500ms', 'gateway'), 500);
    assert.equal(parseDuration('1h30m', 'gateway'), 5_400_000);
    assert.equal(parseDuration('1h1m1s1ms', 'gateway'), 3_661_001);
    assert.equal(parseDuration('0s', 'gateway'), 0);
  });

  it('refuses what GEP-2257 leaves out: fractions, signs, more than 5 digits or 4 parts, other units', () => {
    for (const text of ['1.5s', '-1s', '100000s', '1h1m1s1ms1s', '10us', '1d', '10', '', ' 1s']) {
      assert.equal(parseDuration(text, 'gateway'), undefined, text);
    }
  });

  it("reads Istio's durations, fractions included", () => {
    assert.equal(parseDuration('1.5s', 'istio'), 1500);
    assert.equal(parseDuration('0.1s', 'istio'), 100);
    assert.equal(parseDuration('.5m', 'istio'), 30_000);
    assert.equal(parseDuration('1h', 'istio'), 3_600_000);
    assert.equal(parseDuration('1m30s', 'istio'), 90_000);
    assert.equal(parseDuration('1.5ms', 'istio'), 1.5, 'left to readDuration to refuse as sub-millisecond');
    for (const text of ['1', '1us', '-1s', 's', '1.5.5s']) assert.equal(parseDuration(text, 'istio'), undefined, text);
  });
});
