import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tapEvent } from '../telemetry/tap.js';
import { fakePod, fakeRequest } from '../testing/request-record.js';
import type { Colours } from './table.js';
import { tapHeader, tapLine } from './tap.js';

const plain: Colours = { bold: (s) => s, red: (s) => s, green: (s) => s, dim: (s) => s };
const tagged: Colours = { bold: (s) => s, red: (s) => `<r>${s}</r>`, green: (s) => `<g>${s}</g>`, dim: (s) => s };

describe('nodemesh tap layout', () => {
  it('one line per request, each column under its header, authority and path when they fit', () => {
    const head = tapHeader(80);
    const line = tapLine(tapEvent(fakeRequest({ method: 'POST', path: '/api/items', durationMs: 12.34 })), 80, plain);
    assert.match(head, /^TIME {5}DIR METHOD STATUS {2}LATENCY SOURCE {6}DESTINATION REQUEST$/);
    assert.match(line, /^\d\d:\d\d:\d\d out POST {3}200 {5} 12\.3ms shop\/client shop\/web {4}web\.shop\/api\/items$/);
    for (const h of ['DIR', 'METHOD', 'STATUS', 'SOURCE', 'DESTINATION', 'REQUEST']) {
      assert.notEqual(line[head.indexOf(h)], ' ', h);
      assert.equal(line[head.indexOf(h) - 1], ' ', h);
    }
    assert.ok(line.length <= 80);
  });

  it('fits 80 columns with long names and paths: the name without its namespace, then its ends; the path cut', () => {
    const e = tapEvent(
      fakeRequest({
        method: 'OPTIONS',
        status: 503,
        responseFlags: 'URX',
        durationMs: 2345,
        authority: 'a-very-long-service-name.a-long-namespace.svc.cluster.local',
        path: '/a/path/that/is/far/too/long/to/show/whole?with=query&and=more',
        source: { pod: fakePod('a-long-namespace', 'checkout-7d9f8b6c5-abcde'), ip: '10.0.0.1' },
        destination: { service: { namespace: 'a-long-namespace', name: 'payments', port: 80 } },
      }),
    );
    const line = tapLine(e, 80, plain);
    assert.ok(line.length <= 80, `${line.length}: ${line}`);
    assert.match(line, / OPTIO… 503 URX {3}2\.35s check…abcde payments {4}\/a\/path\/that\/is\/far…$/);
  });

  it('shows the gRPC status after the HTTP one and colours only the status, red for failures', () => {
    const grpc = tapEvent(fakeRequest({ protocol: 'grpc', status: 200, grpcStatus: 14, path: '/pkg.Svc/Call' }));
    assert.match(tapLine(grpc, 80, tagged), / <r>200\/14 <\/r> /);
    assert.match(tapLine(tapEvent(fakeRequest()), 80, tagged), / <g>200 {4}<\/g> /);
    assert.match(tapLine(tapEvent(fakeRequest({ status: 0, responseFlags: 'DC' })), 80, tagged), / <r>- DC {3}<\/r> /);
  });

  it('uses a wider terminal for the names and the request', () => {
    const line = tapLine(tapEvent(fakeRequest({ path: '/x'.repeat(40) })), 132, plain);
    assert.ok(line.length > 80 && line.length <= 132, `${line.length}`);
  });
});
