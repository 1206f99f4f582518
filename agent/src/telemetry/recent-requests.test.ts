import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestRecord } from './request-record.js';
import { RecentRequests } from './recent-requests.js';

const record = (reporter: RequestRecord['reporter'], path: string): RequestRecord => ({
  reporter,
  startMs: 0,
  durationMs: 1.23456,
  protocol: 'http',
  httpVersion: '1.1',
  method: 'GET',
  authority: 'web',
  path,
  status: 200,
  responseFlags: '-',
  requestBytes: 0,
  responseBytes: 2,
  retries: 0,
  source: { ip: '10.0.0.1' },
  destination: {},
  security: 'mutual_tls',
});

describe('recent requests (admin /requests)', () => {
  it('keeps the newest records, oldest first, and filters by reporter', () => {
    const recent = new RecentRequests(3);
    for (const [i, reporter] of (['source', 'destination', 'source', 'destination', 'source'] as const).entries()) recent.request(record(reporter, `/${i}`));
    assert.deepEqual(recent.views().map((v) => v.path), ['/2', '/3', '/4']);
    assert.deepEqual(recent.views('source').map((v) => v.path), ['/2', '/4']);
    const [view] = recent.views('destination');
    assert.equal(view?.durationMs, 1.235);
    assert.deepEqual(view?.destination, { service: null, endpoint: null, pod: null });
    assert.equal(view?.grpcStatus, null);
  });

  it('rejects an unknown reporter as a bad argument', () => {
    assert.throws(() => new RecentRequests().views('sidecar'), { code: 'NM_ERR_CLI_ARGUMENT' });
  });
});
