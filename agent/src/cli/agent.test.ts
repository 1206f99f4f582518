import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseMetricsFlag } from './agent.js';

describe('agent --metrics', () => {
  it('takes HOST:PORT', () => {
    assert.deepEqual(parseMetricsFlag('0.0.0.0:15020'), { host: '0.0.0.0', port: 15020 });
    assert.deepEqual(parseMetricsFlag('[::1]:9090'), { host: '::1', port: 9090 });
  });

  it('takes off: no metrics listener', () => {
    assert.equal(parseMetricsFlag('off'), undefined);
  });

  it('names the flag and both forms in its error', () => {
    for (const bad of ['', 'OFF', 'none', '15020', 'host:0']) {
      assert.throws(() => parseMetricsFlag(bad), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'NM_ERR_CLI_ARGUMENT');
        assert.match(err.message, /^--metrics must be HOST:PORT \(e\.g\. 0\.0\.0\.0:15020\) or off, got "/);
        return true;
      });
    }
  });
});
