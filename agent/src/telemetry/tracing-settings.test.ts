import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseTracingSettings } from './tracing-settings.js';

describe('tracing flags', () => {
  it('are off without an endpoint, sample every new trace by default, and name the bad flag', () => {
    assert.equal(parseTracingSettings(undefined, undefined), undefined);
    assert.deepEqual(parseTracingSettings('http://collector:4318/v1/traces', undefined), { endpoint: 'http://collector:4318/v1/traces', sampling: 1 });
    assert.deepEqual(parseTracingSettings('https://c.example/v1/traces', '0.01'), { endpoint: 'https://c.example/v1/traces', sampling: 0.01 });
    assert.throws(() => parseTracingSettings(undefined, '0.5'), /--tracing-sampling needs --tracing-endpoint/);
    assert.throws(() => parseTracingSettings('collector:4318', undefined), /--tracing-endpoint must be .*"collector:4318"/);
    assert.throws(() => parseTracingSettings('ftp://c/v1/traces', undefined), /--tracing-endpoint/);
    for (const bad of ['1.5', '-0.1', '', 'half']) assert.throws(() => parseTracingSettings('http://c:4318/v1/traces', bad), /--tracing-sampling must be a ratio from 0 to 1/);
  });
});
